"""Static structure: no import cycles among the project's modules, shared/ imports neither
package, and no module uses another module's private names (docs/ARCHITECTURE.md)."""
import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("shared", "permutation_ad", "lhco_fullphase", "plots", "benchmarks")
PACKAGES = ("shared", "permutation_ad", "lhco_fullphase")


def _modules():
    mods = {}
    for root in ROOTS:
        for path in (REPO / root).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


MODULES = _modules()


def _resolve(name):
    """The project module an import of ``name`` loads (longest known prefix), or None."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


def _imports(mod, path):
    """(imported module, imported names, line) of every import statement, anywhere in the file."""
    tree = ast.parse(path.read_text())
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(pkg.split(".")[: len(pkg.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:   # `from pkg import module` imports the submodule
                sub = f"{base}.{a.name}"
                out.append((sub, [], node.lineno) if _resolve(sub) == sub
                           else (base, [a.name], node.lineno))
    return out


def _graph():
    graph = {m: set() for m in MODULES}
    for mod, path in MODULES.items():
        for name, _, _ in _imports(mod, path):
            target = _resolve(name)
            if target and target != mod:
                graph[mod].add(target)
    return graph


def test_no_import_cycles():
    graph, state, stack, cycles = _graph(), {}, [], []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                cycles.append(stack[stack.index(n):] + [n])
            elif n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    # a package __init__ importing its own submodules is not a cycle of modules
    cycles = [c for c in cycles if not any(c[0] == x or c[0].startswith(x + ".") and
                                           c[-2] == x for x in MODULES if x in c[1:-1])]
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_shared_imports_neither_package():
    bad = [(m, t) for m, ts in _graph().items() if m.startswith("shared")
           for t in ts if t.split(".")[0] in ("permutation_ad", "lhco_fullphase")]
    assert not bad, bad


def test_no_private_names_across_modules():
    bad = []
    for mod, path in MODULES.items():
        tree = ast.parse(path.read_text())
        aliases = {}
        for name, names, line in _imports(mod, path):
            target = _resolve(name)
            if target is None or target == mod:
                continue
            bad += [f"{mod}:{line} imports {target}.{n}" for n in names
                    if n.startswith("_") and not n.startswith("__")]
            # a private module (shared/data/_hdfio.py) serves its own package only
            private = [p for p in target.split(".") if p.startswith("_") and not p.startswith("__")]
            owner = target.rpartition(".")[0]
            if private and not (mod == owner or mod.startswith(owner + ".")):
                bad.append(f"{mod}:{line} imports the private module {target}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if _resolve(a.name):
                        aliases[a.asname or a.name.split(".")[0]] = a.name
            elif isinstance(node, ast.ImportFrom) and node.module:
                for a in node.names:
                    full = f"{node.module}.{a.name}"
                    if _resolve(full) == full:
                        aliases[a.asname or a.name] = full
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in aliases and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                bad.append(f"{mod}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    assert not bad, "\n".join(bad)
