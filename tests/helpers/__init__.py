"""Shared test code: random models, the stand-in model's mirror, codegen checks, a scripted pty."""
