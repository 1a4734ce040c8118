/* Minimal newlib system calls for edgecompile's bare-metal Cortex-M builds.
 * No heap growth (the firmware never mallocs), no files; writes go nowhere unless a HAL overrides
 * the weak _write (e.g. to a UART). Replaces libnosys so that the link has no warnings. */
#include <errno.h>
#include <stddef.h>
#include <sys/stat.h>

int _close(int fd);
int _fstat(int fd, struct stat *st);
int _getpid(void);
int _isatty(int fd);
int _kill(int pid, int sig);
int _lseek(int fd, int off, int whence);
int _read(int fd, char *buf, int len);
int _write(int fd, const char *buf, int len);
void *_sbrk(ptrdiff_t incr);
void _exit(int status);

int _close(int fd) { (void)fd; errno = EBADF; return -1; }
int _fstat(int fd, struct stat *st) { (void)fd; st->st_mode = S_IFCHR; return 0; }
int _getpid(void) { return 1; }
int _isatty(int fd) { (void)fd; return 1; }
int _kill(int pid, int sig) { (void)pid; (void)sig; errno = EINVAL; return -1; }
int _lseek(int fd, int off, int whence) { (void)fd; (void)off; (void)whence; return 0; }
int _read(int fd, char *buf, int len) { (void)fd; (void)buf; (void)len; return 0; }
__attribute__((weak)) int _write(int fd, const char *buf, int len) { (void)fd; (void)buf; return len; }
void *_sbrk(ptrdiff_t incr) { (void)incr; errno = ENOMEM; return (void *)-1; }
void _exit(int status) { (void)status; for (;;) { } }
