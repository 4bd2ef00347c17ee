# The package is pure Python over ctypes; the build copies the C library (libcterp.so, from
# $CTERP_LIB or the source tree's build/) next to the installed package so it is found there.
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


class build_py_with_lib(build_py):
    def run(self):
        super().run()
        src = os.environ.get("CTERP_LIB") or os.path.join(HERE, "..", "build", "libcterp.so")
        if not os.path.exists(src):
            raise SystemExit("cterp: %s not found: build the library first (bash scripts/build.sh) "
                             "or set CTERP_LIB" % src)
        dst = os.path.join(self.build_lib, "cterp", "libcterp.so")
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copyfile(src, dst)
        os.chmod(dst, 0o755)


setup(cmdclass={"build_py": build_py_with_lib})
