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


def _cortexm_dir():
    for cand in (os.path.join(PLATFORM_DIR, "cortexm"), os.path.join(PLATFORM_DIR, "..", "cortexm")):
        if os.path.isdir(cand):
            return os.path.abspath(cand)
    sys.stderr.write("Error: the edgecompile platform has no cortexm/ folder\n")
    env.Exit(1)
    return None


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
    cm = _cortexm_dir()
    # One linker script for every Cortex-M board; the board gives its memory map.
    with open(os.path.join(cm, "cortexm.ld.in")) as fh:
        script = fh.read()
    for key, default in (("flash_origin", "0x00000000"), ("ram_origin", "0x20000000")):
        script = script.replace("@" + key.upper() + "@", board.get("build.ec_" + key, default))
    script = script.replace("@FLASH_SIZE@", str(board.get("upload.maximum_size")))
    script = script.replace("@RAM_SIZE@", str(board.get("upload.maximum_ram_size")))
    script = script.replace("@STACK_SIZE@", str(board.get("build.ec_stack_size", 2048)))
    build_dir = env.subst("$BUILD_DIR")
    os.makedirs(build_dir, exist_ok=True)
    ldscript = os.path.join(build_dir, "edgecompile_cortexm.ld")
    old = None
    if os.path.isfile(ldscript):
        with open(ldscript) as fh:
            old = fh.read()
    if old != script:
        with open(ldscript, "w") as fh:
            fh.write(script)
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
    AlwaysBuild(env.Alias("nobuild", image))
    target_buildprog = env.Alias("buildprog", image, image)

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
