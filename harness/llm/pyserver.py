"""llama-cpp-python's OpenAI-compatible server (the fallback backend), with llama.cpp's weight repacking off
on a CPU with AMX, as llama-server's --no-repack: loading a model dies there otherwise (exit 139).

Run as `python -m harness.llm.pyserver <llama_cpp.server flags>`."""

from __future__ import annotations

import llama_cpp.llama_cpp as lib

from harness.llm.local import cpu_has_amx


def _no_repack(default=lib.llama_model_default_params):
    def params():
        p = default()
        p.use_extra_bufts = False  # the C field behind --no-repack
        return p

    return params


if __name__ == "__main__":
    if cpu_has_amx():
        lib.llama_model_default_params = _no_repack()
    from llama_cpp.server.__main__ import main

    main()
