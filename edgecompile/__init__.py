"""edgecompile: trained FastGRNN/FastRNN checkpoints to bit-exact fixed-point C on microcontrollers."""

__version__ = "0.1.0"
