#!/usr/bin/env python3
"""The reference side of tests/test_tokenizer_spm.c: python3-sentencepiece on the same inputs.

  spm_reference.py encode MODEL DOCS OUT   DOCS: records [u32 len][bytes]; OUT per document:
                                           [u32 n][n x u32 EncodeAsIds] [u32 m][DecodeIds(ids) as UTF-8]
  spm_reference.py decode MODEL IDS OUT    IDS: records [u32 n][n x u32]; OUT per record: [u32 m][DecodeIds]
Documents are passed as bytes, so invalid UTF-8 goes through sentencepiece's own handling."""
import struct
import sys

import sentencepiece as spm


def records(path, ints):
    data = open(path, "rb").read()
    at, out = 0, []
    while at < len(data):
        (n,) = struct.unpack_from("<I", data, at)
        at += 4
        if ints:
            out.append(list(struct.unpack_from("<%dI" % n, data, at)))
            at += 4 * n
        else:
            out.append(data[at : at + n])
            at += n
    return out


def text(s):
    b = s.encode("utf-8", "surrogateescape")
    return struct.pack("<I", len(b)) + b


def main():
    mode, model, inp, outp = sys.argv[1:5]
    sp = spm.SentencePieceProcessor(model_file=model)
    out = []
    if mode == "encode":
        docs = records(inp, False)
        for ids in sp.EncodeAsIds(docs):
            out.append(struct.pack("<I%dI" % len(ids), len(ids), *ids))
            out.append(text(sp.DecodeIds(ids)))
    elif mode == "decode":
        for ids in records(inp, True):
            out.append(text(sp.DecodeIds(ids)))
    else:
        sys.exit("unknown mode " + mode)
    with open(outp, "wb") as f:
        f.write(b"".join(out))


if __name__ == "__main__":
    main()
