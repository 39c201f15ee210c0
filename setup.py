"""Builds the optional native block kernel; without a C compiler streamscope falls back to numpy/torch."""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "streamscope.kernels._native",
            ["streamscope/kernels/_native.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
