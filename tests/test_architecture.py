"""The package's architecture, checked: layers that import only downward, modules that fit in
one reading, hooks and model gradients in the capture module only.

The layers, bottom to top (README, "Architecture"); a module may import its own layer and
those below it, never one above:

    base        targets, threads, tables, images, resnet, inputs (no package imports but base)
    core        capture, inference, cams, attributions           one capture, every method
    world       shapes, models, truncate, weights, classification, train
    evaluation  metrics, faithfulness, scoreboard, gradflow, probes, verdict
    display     render, viz, layers, session, explorer
    interface   cli_parser, cli, __main__, recorded, exercises.*
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "gradcam_edu"
LAYERS = {
    "base": ["targets", "threads", "tables", "images", "resnet", "inputs"],
    "core": ["capture", "inference", "cams", "attributions"],
    "world": ["shapes", "models", "truncate", "variants", "weights", "classification", "train",
              "fetch"],
    "evaluation": ["metrics", "faithfulness", "scoreboard", "gradflow", "probes", "evidence",
                   "sanity", "verdict", "claims", "literature"],
    "display": ["render", "viz", "layers", "session", "explorer", "views"],
    "interface": ["cli_parser", "cli", "__main__", "__init__", "recorded", "exercises"],
}
LAYERS["evaluation"] += ["faithfulness_board", "faithfulness_evidence"]   # del. / ins.
LAYERS["display"] += ["diagram"]          # the BasicBlock drawing
LAYERS["interface"] += ["claim_lab", "post"]   # the claim lab; the post's code, as written
RANK = {m: i for i, mods in enumerate(LAYERS.values()) for m in mods}
MAX_MODULE_LINES = 450
MAX_FUNCTION_LINES = 80


def modules() -> dict[str, Path]:
    """Package module name (``"cams"``, ``"exercises.nb01"``) -> file."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).with_suffix("")
        out[".".join(rel.parts)] = path
    return out


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    if top not in RANK:
        raise AssertionError(f"module {module!r} has no layer: add it to LAYERS (and to the "
                             "README's Architecture section)")
    return RANK[top]


def package_imports(module: str, path: Path) -> list[tuple[str, int, bool]]:
    """``(imported package module, line, at module level)`` for every import of the package's
    own modules in ``path``."""
    tree = ast.parse(path.read_text())
    top_level = {id(node) for node in tree.body}
    package = module.split(".")[:-1]
    found = []
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                prefix = ".".join([*base, node.module] if node.module else base)
            elif node.module and node.module.split(".")[0] == "gradcam_edu":
                prefix = node.module[len("gradcam_edu"):].lstrip(".")
            else:
                continue
            if node.module is None or prefix == "":
                names = [f"{prefix}.{a.name}".lstrip(".") for a in node.names]
            else:
                names = [prefix]
        elif isinstance(node, ast.Import):
            names = [a.name[len("gradcam_edu."):] for a in node.names
                     if a.name.startswith("gradcam_edu.")]
        for name in names:
            found.append((name, node.lineno, id(node) in top_level))
    return found


def test_every_module_has_a_layer():
    for name in modules():
        layer_of(name)


@pytest.mark.parametrize("module", sorted(modules()))
def test_imports_point_down_and_sit_at_the_top(module):
    path = modules()[module]
    for imported, line, top in package_imports(module, path):
        if imported.split(".")[0] not in RANK and imported.split(".")[0] not in modules():
            continue
        assert layer_of(imported) <= layer_of(module), (
            f"{path.name}:{line} imports {imported!r}, a layer above {module!r}")
        guarded = "if __name__" in path.read_text().splitlines()[line - 2] if line > 1 else False
        assert top or guarded, (f"{path.name}:{line}: import of {imported!r} inside a function; "
                                "module-level imports say what a module depends on")


@pytest.mark.parametrize("module", sorted(modules()))
def test_modules_and_functions_fit_in_one_reading(module):
    path = modules()[module]
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{path.name} is over {MAX_MODULE_LINES}"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = node.end_lineno - node.lineno + 1
            assert length <= MAX_FUNCTION_LINES, (
                f"{path.name}:{node.lineno} {node.name} has {length} lines")


HOOKS_AND_GRADIENTS = ("register_forward_hook", "register_forward_pre_hook",
                       "register_full_backward_hook", "register_full_backward_pre_hook",
                       "register_backward_hook", "register_module_forward", ".register_hook(",
                       "autograd.grad(", "from torch.autograd import", "torch.func.grad",
                       "torch.func.vjp", ".backward(")
ALLOWED = {
    # (module, needle): why it is not explaining a model
    ("metrics", "torch.func.vjp"): "the adjoint of the bilinear upsampling, not of a model",
}


def forbidden_lines(module: str, text: str) -> list[str]:
    """Code lines of ``module`` that hook a model or differentiate outside the capture.
    Training (``loss.backward()`` in train and probes) is not explaining a model."""
    found = []
    for line in text.splitlines():
        code = line.split("#")[0]
        if code.strip().startswith(('"', "'", "``")) or not code.strip():
            continue
        for needle in HOOKS_AND_GRADIENTS:
            if needle not in code or (module, needle) in ALLOWED:
                continue
            if needle == ".backward(" and (
                    ("cap.backward(" in code or "rec.backward(" in code)
                    or (module in ("train", "probes") and "loss.backward()" in code)):
                continue
            found.append(f"{module}: {line.strip()}")
    return found


def test_hooks_and_model_gradients_only_in_the_capture_module():
    """One capture mechanism: nobody else hooks a model or differentiates its outputs."""
    bad = [line for name, path in modules().items() if name != "capture"
           for line in forbidden_lines(name, path.read_text())]
    assert not bad, bad


def test_the_hook_checker_sees_a_violation():
    text = ("x.register_hook(f)\nfrom torch.autograd import grad\nscores.sum().backward()\n"
            "cap.backward(3)\nloss.backward()\n")
    assert len(forbidden_lines("explorer", text)) == 4      # loss.backward outside training
    assert len(forbidden_lines("train", text)) == 3


def test_the_checker_sees_a_violation(tmp_path):
    """The import checker itself: an upward and a function-local import are both found."""
    bad = tmp_path / "bad.py"
    bad.write_text("from .explorer import Explorer\n\ndef f():\n    from . import cli\n")
    found = package_imports("capture", bad)
    assert [(n, top) for n, _, top in found] == [("explorer", True), ("cli", False)]
    assert layer_of("explorer") > layer_of("capture")
