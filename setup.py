"""pip install --no-build-isolation .   builds streampool's Python package with CMake (README, "Python").

The extension and libstreampool are built by the project's CMake (preset-like Release, no tests,
tools or benchmarks) for the interpreter running pip, and installed side by side in the
package directory (the module finds the library through its $ORIGIN run path).
"""

import glob
import os
import shutil
import subprocess
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = os.path.dirname(os.path.abspath(__file__))


class CMakeBuild(build_ext):
    def build_extension(self, ext):
        out = os.path.dirname(os.path.abspath(self.get_ext_fullpath(ext.name)))
        build = os.path.abspath(os.path.join(self.build_temp, "cmake"))
        args = ["cmake", "-S", ROOT, "-B", build, "-DCMAKE_BUILD_TYPE=Release", f"-DPython_EXECUTABLE={sys.executable}",
                "-DSTREAMPOOL_PYTHON=ON", "-DSTREAMPOOL_BUILD_TESTS=OFF", "-DSTREAMPOOL_BUILD_TOOLS=OFF",
                "-DSTREAMPOOL_BUILD_BENCHMARKS=OFF"]
        if shutil.which("ninja"):
            args += ["-G", "Ninja"]
        try:  # pybind11 from pip where Debian's pybind11-dev is absent (the GPU machine)
            import pybind11
            args.append(f"-Dpybind11_DIR={pybind11.get_cmake_dir()}")
        except ImportError:
            pass
        subprocess.check_call(args)
        subprocess.check_call(["cmake", "--build", build, "--target", "streampool_python"])
        os.makedirs(out, exist_ok=True)
        for f in glob.glob(os.path.join(build, "python", "streampool", "_core*.so")) + glob.glob(
                os.path.join(build, "libstreampool.so*")):
            shutil.copy2(f, out, follow_symlinks=True)


setup(
    name="streampool",
    version="0.1.0",
    description="Thread-safe, scalable parallel neural-network inference on CUDA GPUs and the CPU",
    python_requires=">=3.11",
    packages=["streampool"],
    package_dir={"": "python"},
    package_data={"streampool": ["*.pyi", "py.typed"]},
    ext_modules=[Extension("streampool._core", sources=[])],
    cmdclass={"build_ext": CMakeBuild},
    install_requires=["numpy"],
    zip_safe=False,
)
