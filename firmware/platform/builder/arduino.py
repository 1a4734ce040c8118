"""The ``arduino`` framework of the edgecompile local platform: Debian's Arduino AVR core.

Builds ``/usr/share/arduino/hardware/arduino/avr/cores/arduino`` (package ``arduino-core-avr``)
as a library and adds the core and the board's variant to the include path. AVR boards only.
"""

import os

from SCons.Script import DefaultEnvironment

env = DefaultEnvironment()
board = env.BoardConfig()

CORE_ROOT = os.environ.get("EDGECOMPILE_ARDUINO_AVR", "/usr/share/arduino/hardware/arduino/avr")
if board.get("build.arch", "") != "avr":
    env.Exit("Error: the offline arduino framework supports AVR boards only")
if not os.path.isdir(os.path.join(CORE_ROOT, "cores", "arduino")):
    env.Exit(
        "Error: Debian's Arduino AVR core is missing (%s); install arduino-core-avr" % CORE_ROOT
    )

core_dir = os.path.join(CORE_ROOT, "cores", board.get("build.core", "arduino"))
variant_dir = os.path.join(CORE_ROOT, "variants", board.get("build.variant", "standard"))

env.Append(
    CPPDEFINES=[
        ("ARDUINO", 10807),
        "ARDUINO_ARCH_AVR",
        "ARDUINO_" + board.get("build.board", "AVR_UNO"),
        # Debian's avr-gcc 5.4 defines DECIMAL_DIG for C only; WString.cpp needs it in C++.
        ("DECIMAL_DIG", "__DECIMAL_DIG__"),
    ],
    CPPPATH=[core_dir, variant_dir],
    LIBPATH=[],
)
env.Prepend(LIBS=[env.BuildLibrary(os.path.join("$BUILD_DIR", "FrameworkArduino"), core_dir)])
