"""The process that runs one submitted ONNX model for the quest server, under limits.

Started by ``cnnlab.quest.models.run_model`` as ``python -I model_worker.py CONFIG_JSON``, in an
empty folder, with a minimal environment. It imports only the standard library, NumPy and ONNX
Runtime (no torch, no cnnlab: ``-I`` keeps the script's folder off ``sys.path``), caps its own
address space, CPU time and file writes, and only then reads the model. No pickles, no user code:
the model is bytes for ONNX Runtime's CPU session, loaded from memory (an initializer stored in an
"external data" file is refused by ONNX Runtime, and the working folder is empty anyway).

Protocol, one line of JSON per reply on stdout:

- once Python, NumPy and ONNX Runtime are imported and the limits set: ``{"started": true}``
  (the wall-time limit counts from here: the interpreter's start is not the model's doing);
- after loading: ``{"ready": true, "batch": B}`` (B: the model's fixed batch, or null);
- stdin then carries batches, each an 8-byte little-endian image count N followed by the
  float32 model inputs (N, C', H', W'), C order; each is answered by
  ``{"predictions": [N class indices], "seconds": time of session.run}``. The first batch runs
  once untimed (warm-up);
- any refusal or failure: ``{"error": "one line", "kind": "shape" | "invalid" | "memory" |
  "runtime"}``, and the process exits 1. End of stdin: exit 0.
"""

import json
import re
import struct
import sys
import time

RUNTIME_ERROR_KINDS = (("alloc", "memory"), ("memory", "memory"))
MAX_FILE_BYTES = 1 << 20  # stderr goes to a file; nothing else is written


def reply(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def refuse(kind: str, text: str) -> None:
    reply({"error": " ".join(text.split())[:500], "kind": kind})
    sys.exit(1)


def limit_resources(config: dict) -> None:
    """Address space, CPU seconds, 1 MB per file written, no core dumps (where the OS has
    rlimits)."""
    try:
        import resource
    except ImportError:  # Windows: no rlimits; the parent's wall-clock limit still holds
        return
    limits = (
        ("RLIMIT_AS", config["memory_bytes"]),
        ("RLIMIT_CPU", config["cpu_seconds"]),
        ("RLIMIT_FSIZE", MAX_FILE_BYTES),
        ("RLIMIT_CORE", 0),
    )
    for name, value in limits:
        kind = getattr(resource, name, None)
        if kind is not None:
            resource.setrlimit(kind, (value, value))


def first_line(error: BaseException) -> str:
    """ONNX Runtime's message without its code prefix; a failed allocation as its size."""
    text = str(error).strip()
    size = re.search(r"buffer of size (\d+)", text)
    if size:
        return f"ONNX Runtime could not allocate {int(size.group(1)):,} bytes"
    text = re.sub(r"^\[ONNXRuntimeError\] : \d+ : \w+ : ", "", text)
    return text.splitlines()[0] if text else type(error).__name__


def runtime_error_kind(error: BaseException) -> str:
    text = str(error).lower()
    if isinstance(error, MemoryError):
        return "memory"
    for needle, kind in RUNTIME_ERROR_KINDS:
        if needle in text:
            return kind
    return "runtime"


def open_session(model: bytes, threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 4  # fatal only: a refused model is reported in one line
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as error:  # ONNX Runtime raises its own types; the message is what matters
        kind = runtime_error_kind(error)
        first = first_line(error)
        if kind == "memory":
            refuse(kind, f"loading the model ran out of memory ({first})")
        refuse("invalid", f"ONNX Runtime cannot load the model: {first}")


def fixed_dim(value) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def check_signature(session, input_shape: list[int], num_classes: int) -> int | None:
    """The model's fixed batch size, or None when its batch is dynamic; refuses a wrong shape."""
    inputs, outputs = session.get_inputs(), session.get_outputs()
    expected_in = f"one float32 input (N, {', '.join(map(str, input_shape))})"
    expected_out = f"an output (N, {num_classes}) of float logits"
    if len(inputs) != 1:
        refuse("shape", f"the model has {len(inputs)} inputs; expected {expected_in}")
    given = inputs[0]
    shape = list(given.shape or [])
    if given.type != "tensor(float)" or len(shape) != 4:
        refuse(
            "shape",
            f"the model's input is {given.type} of shape {shape}; expected {expected_in}",
        )
    for have, want in zip(shape[1:], input_shape, strict=True):
        if fixed_dim(have) is not None and have != want:
            refuse("shape", f"the model's input has shape {shape}; expected {expected_in}")
    if not outputs:
        refuse("shape", f"the model has no output; expected {expected_out}")
    out = outputs[0]
    out_shape = list(out.shape or [])
    wrong_classes = len(out_shape) == 2 and fixed_dim(out_shape[1]) not in (None, num_classes)
    if out.type not in ("tensor(float)", "tensor(float16)", "tensor(double)") or (
        len(out_shape) != 2 or wrong_classes
    ):
        refuse(
            "shape",
            f"the model's output is {out.type} of shape {out_shape}; expected {expected_out}",
        )
    return fixed_dim(shape[0])


def read_exactly(stream, count: int) -> bytes | None:
    data = stream.read(count)
    if not data:
        return None
    if len(data) != count:
        refuse("runtime", f"the server sent {len(data)} of {count} bytes")
    return data


def serve_batches(session, input_shape: list[int], num_classes: int) -> None:
    import numpy as np

    name = session.get_inputs()[0].name
    per_image = 4 * input_shape[0] * input_shape[1] * input_shape[2]
    stdin = sys.stdin.buffer
    warm = False
    while True:
        header = read_exactly(stdin, 8)
        if header is None:
            return
        (count,) = struct.unpack("<Q", header)
        data = read_exactly(stdin, count * per_image)
        batch = np.frombuffer(data, dtype=np.float32).reshape(count, *input_shape)
        try:
            if not warm:
                session.run(None, {name: batch})
                warm = True
            start = time.perf_counter()
            logits = session.run(None, {name: batch})[0]
            seconds = time.perf_counter() - start
        except Exception as error:
            refuse(runtime_error_kind(error), f"running the model failed: {first_line(error)}")
        logits = np.asarray(logits)
        if logits.shape != (count, num_classes):
            refuse(
                "shape",
                f"the model returned shape {list(logits.shape)} for {count} images; "
                f"expected [{count}, {num_classes}] (one logit per class)",
            )
        reply({"predictions": logits.argmax(axis=1).tolist(), "seconds": seconds})


def main() -> None:
    config = json.loads(sys.argv[1])
    import numpy  # noqa: F401  (imported before the address-space cap: the cap is for the model)
    import onnxruntime  # noqa: F401

    limit_resources(config)
    reply({"started": True})
    with open(config["model"], "rb") as file:
        model = file.read()
    session = open_session(model, config["threads"])
    del model
    batch = check_signature(session, config["input_shape"], config["num_classes"])
    reply({"ready": True, "batch": batch})
    serve_batches(session, config["input_shape"], config["num_classes"])


if __name__ == "__main__":
    main()
