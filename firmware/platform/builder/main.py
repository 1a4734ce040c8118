"""SCons build script of the edgecompile local PlatformIO platform.

Toolchains come from the system (Debian packages), never from the PlatformIO registry:
``board.build.arch`` selects ``avr-`` (gcc-avr, avr-libc), ``arm-none-eabi-`` (gcc-arm-none-eabi,
libnewlib-arm-none-eabi) or the host compiler (``native``). Cortex-M programs get the bare-metal
start-up code and the one linker script in ``cortexm/`` next to this platform, with the memory
sizes of the board substituted into the script at build time.
"""

import os
import sys

from SCons.Script import (  # noqa: F401 (SCons globals)
    AlwaysBuild,
    Builder,
    Default,
    DefaultEnvironment,
)

env = DefaultEnvironment()
platform = env.PioPlatform()
board = env.BoardConfig() if "BOARD" in env else None

arch = board.get("build.arch", "native") if board else "native"
PLATFORM_DIR = platform.get_dir()


def _shared_dir(name):
    """A folder shipped next to this platform (``cortexm``, ``rp2040``): inside it in a
    project, beside it in the source tree."""
    for cand in (os.path.join(PLATFORM_DIR, name), os.path.join(PLATFORM_DIR, "..", name)):
        if os.path.isdir(cand):
            return os.path.abspath(cand)
    sys.stderr.write("Error: the edgecompile platform has no %s/ folder\n" % name)
    env.Exit(1)
    return None


def _shared_file(rel):
    """``<folder>/<file>`` of a shared folder (board keys ``build.ec_ldscript``, ...)."""
    folder, _, name = rel.partition("/")
    return os.path.join(_shared_dir(folder), name)


def _load_helper(path):
    """A helper script of a shared folder (boot2.py, uf2.py) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ec_" + os.path.splitext(os.path.basename(path))[0], path)
    mod = importlib.util.module_from_spec(spec)
    keep, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec.loader.exec_module(mod)
    finally:
        sys.dont_write_bytecode = keep
    return mod


def _write_if_changed(path, text):
    old = None
    if os.path.isfile(path):
        with open(path) as fh:
            old = fh.read()
    if old != text:
        with open(path, "w") as fh:
            fh.write(text)


def _linker_script(template, flash_size, ram_size, name):
    """The board's memory map substituted into ``template``, written to the build folder."""
    with open(template) as fh:
        script = fh.read()
    for key, default in (("flash_origin", "0x00000000"), ("ram_origin", "0x20000000")):
        script = script.replace("@" + key.upper() + "@", board.get("build.ec_" + key, default))
    script = script.replace("@FLASH_SIZE@", str(flash_size))
    script = script.replace("@RAM_SIZE@", str(ram_size))
    script = script.replace("@STACK_SIZE@", str(board.get("build.ec_stack_size", 2048)))
    build_dir = env.subst("$BUILD_DIR")
    os.makedirs(build_dir, exist_ok=True)
    path = os.path.join(build_dir, name)
    _write_if_changed(path, script)
    return path


def _boot2_source(source):
    """An RP2040-style second-stage boot loader: ``source`` (assembly) assembled alone, padded
    to 256 bytes with its CRC32 by ``boot2.py`` beside it, as a C file for ``.boot2``."""
    import subprocess

    out = os.path.join(env.subst("$BUILD_DIR"), "edgecompile_boot2")
    os.makedirs(out, exist_ok=True)
    elf, raw = os.path.join(out, "boot2.elf"), os.path.join(out, "boot2.bin")
    for cmd in (["arm-none-eabi-gcc", "-mcpu=" + board.get("build.cpu"), "-mthumb", "-nostdlib",
                 "-Wl,-Ttext=0x20041f00", "-Wl,-e,ech_boot2", source, "-o", elf],
                ["arm-none-eabi-objcopy", "-O", "binary", elf, raw]):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.stderr.write("Error: boot2: %s\n" % (proc.stderr.strip() or " ".join(cmd)))
            env.Exit(1)
    boot2 = _load_helper(os.path.join(os.path.dirname(source), "boot2.py"))
    with open(raw, "rb") as fh:
        image = boot2.pad_boot2(fh.read())
    src_dir = os.path.join(out, "src")
    os.makedirs(src_dir, exist_ok=True)
    _write_if_changed(os.path.join(src_dir, "ech_boot2_image.c"), boot2.boot2_c_source(image))
    return src_dir


common_flags = ["-Os", "-Wall", "-ffunction-sections", "-fdata-sections"]


def use_toolchain(prefix):
    """The GNU toolchain whose tools are named ``<prefix>gcc``, ``<prefix>objcopy``, ..."""
    env.Replace(
        AR=prefix + "gcc-ar", AS=prefix + "gcc", CC=prefix + "gcc", CXX=prefix + "g++",
        GDB=prefix + "gdb", OBJCOPY=prefix + "objcopy", RANLIB=prefix + "gcc-ranlib",
        SIZETOOL=prefix + "size", PROGSUFFIX=".elf",
    )


if arch == "avr":
    use_toolchain("avr-")
    mcu = board.get("build.mcu")
    machine = ["-mmcu=" + mcu]
    env.Append(
        ASFLAGS=machine + ["-x", "assembler-with-cpp"],
        CCFLAGS=common_flags + machine,
        CFLAGS=["-std=gnu11"],
        CXXFLAGS=["-std=gnu++11", "-fno-exceptions", "-fno-threadsafe-statics", "-fpermissive"],
        CPPDEFINES=[("F_CPU", board.get("build.f_cpu"))],
        LINKFLAGS=["-Os", "-Wl,--gc-sections"] + machine,
        LIBS=["m"],
    )
    env.Replace(
        SIZEPRINTCMD="$SIZETOOL -A -d $SOURCES",
        SIZEPROGREGEXP=r"^(?:\.text|\.data|\.bootloader)\s+(\d+).*",
        SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.noinit)\s+(\d+).*",
        SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    )
elif arch == "arm":
    use_toolchain("arm-none-eabi-")
    cpu = board.get("build.cpu")
    machine = ["-mcpu=" + cpu, "-mthumb"]
    fpu = board.get("build.fpu", "")
    if fpu:
        machine += ["-mfpu=" + fpu, "-mfloat-abi=" + board.get("build.float_abi", "hard")]
    else:
        machine += ["-mfloat-abi=soft"]
    cm = _shared_dir("cortexm")
    # One linker script template for the Cortex-M boards (the RP2040 has its own, with the boot
    # loader first); the board gives its memory map.
    template = (_shared_file(board.get("build.ec_ldscript")) if board.get("build.ec_ldscript", "")
                else os.path.join(cm, "cortexm.ld.in"))
    ldscript = _linker_script(template, board.get("upload.maximum_size"),
                              board.get("upload.maximum_ram_size"), "edgecompile_cortexm.ld")
    # A board whose emulated twin has less memory (the Blue Pill on QEMU's STM32F100) gets a
    # second link of the same objects for the twin's memory map: firmware_twin.elf.
    twin_ldscript = None
    if board.get("build.ec_twin_ram_size", ""):
        twin_ldscript = _linker_script(
            template, board.get("build.ec_twin_flash_size", board.get("upload.maximum_size")),
            board.get("build.ec_twin_ram_size"), "edgecompile_cortexm_twin.ld")
    env.Append(
        ASFLAGS=machine + ["-x", "assembler-with-cpp"],
        CCFLAGS=common_flags + machine,
        CFLAGS=["-std=gnu11"],
        CXXFLAGS=["-std=gnu++11", "-fno-exceptions", "-fno-rtti"],
        CPPDEFINES=[("F_CPU", board.get("build.f_cpu")), "EC_CORTEXM"],
        CPPPATH=[cm],
        LINKFLAGS=machine + ["-Os", "-Wl,--gc-sections", "--specs=nano.specs",
                             "--specs=nosys.specs", "-nostartfiles", "-T", ldscript],
        LIBS=["c", "m", "gcc"],
    )
    # Start-up code and syscall stubs are part of every Cortex-M program.
    env.BuildSources(os.path.join("$BUILD_DIR", "edgecompile_cortexm"), cm)
    if board.get("build.ec_boot2", ""):
        env.BuildSources(os.path.join("$BUILD_DIR", "edgecompile_boot2_obj"),
                         _boot2_source(_shared_file(board.get("build.ec_boot2"))))
    env.Replace(
        SIZEPRINTCMD="$SIZETOOL -A -d $SOURCES",
        SIZEPROGREGEXP=r"^(?:\.isr_vector|\.text|\.rodata|\.ARM\.exidx|\.ARM\.extab|\.init_array|\.fini_array|\.preinit_array|\.data)\s+(\d+).*",
        SIZEDATAREGEXP=r"^(?:\.data|\.bss|\.noinit)\s+(\d+).*",
        SIZECHECKCMD="$SIZETOOL -A -d $SOURCES",
    )
else:  # native: the host's C compiler
    env.Replace(PROGSUFFIX="", SIZETOOL="size")
    env.Append(CCFLAGS=["-O2", "-Wall"], CFLAGS=["-std=gnu11"], LIBS=["m"])

# Framework scripts (builder/arduino.py) run inside BuildProgram, after the toolchain is set.
env.Replace(PROGNAME="firmware")
target_elf = env.BuildProgram()

if arch in ("avr", "arm"):
    if arch == "avr":
        image = env.Command(
            os.path.join("$BUILD_DIR", "${PROGNAME}.hex"), target_elf,
            env.VerboseAction("$OBJCOPY -O ihex -R .eeprom $SOURCES $TARGET", "Building $TARGET"),
        )
    else:
        image = env.Command(
            os.path.join("$BUILD_DIR", "${PROGNAME}.bin"), target_elf,
            env.VerboseAction("$OBJCOPY -O binary $SOURCES $TARGET", "Building $TARGET"),
        )
    env.Depends(image, "checkprogsize")
    extra = []
    if arch == "arm" and twin_ldscript is not None:
        twin_flags = [twin_ldscript if f == ldscript else f for f in env["LINKFLAGS"]]
        extra.append(env.Program(os.path.join("$BUILD_DIR", "${PROGNAME}_twin"),
                                 env["PIOBUILDFILES"], LINKFLAGS=twin_flags))
    if arch == "arm" and board.get("build.ec_uf2", False):
        def _uf2(target, source, env):
            uf2 = _load_helper(_shared_file("rp2040/uf2.py"))
            with open(str(source[0]), "rb") as fh:
                blob = uf2.elf_to_uf2(fh.read())
            with open(str(target[0]), "wb") as fh:
                fh.write(blob)
            return None

        extra.append(env.Command(os.path.join("$BUILD_DIR", "${PROGNAME}.uf2"), target_elf,
                                 env.VerboseAction(_uf2, "Building $TARGET")))
    AlwaysBuild(env.Alias("nobuild", image))
    target_buildprog = env.Alias("buildprog", list(image) + [n for e in extra for n in e], image)

    target_size = env.Alias(
        "size", target_elf, env.VerboseAction("$SIZEPRINTCMD", "Calculating size $SOURCE")
    )
    AlwaysBuild(target_size)

    # Upload: AVR through avrdude (Debian package), over the board's serial bootloader. Arm
    # boards upload from their standard PlatformIO platform; the QEMU boards have nothing to flash.
    if arch == "avr":
        env.Replace(
            UPLOADER="avrdude",
            UPLOADERFLAGS=[
                "-p", board.get("build.mcu"),
                "-c", board.get("upload.protocol", "arduino"),
                "-b", str(board.get("upload.speed", 115200)),
                "-P", '"$UPLOAD_PORT"',
                "-D",
            ],
            UPLOADCMD="$UPLOADER $UPLOADERFLAGS -U flash:w:$SOURCES:i",
        )
        upload = env.Alias("upload", image, [
            env.VerboseAction("$UPLOADCMD", "Uploading $SOURCE"),
        ])
        AlwaysBuild(upload)
    Default([target_buildprog, target_size])
else:
    target_size = env.Alias("size", target_elf, env.VerboseAction("$SIZETOOL $SOURCES", "size"))
    AlwaysBuild(target_size)
    Default([target_elf])
