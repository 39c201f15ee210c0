"""Builds the optional native block kernel; without a C compiler streamscope falls back to numpy/torch."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamscope.kernels._native",
            ["streamscope/kernels/_native.c"],
            # fp-contract off: the quantization kernel must round exactly as torch does, element by element
            extra_compile_args=["-O3", "-fopenmp-simd", "-ffp-contract=off"],
            libraries=["m"],  # fmaf, where the CPU has no FMA instruction
            optional=True,
        )
    ]
)
