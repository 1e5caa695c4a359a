"""The shape of the code base, read from the source with `ast` (nothing is imported):

- layers: dnnlib <- torch_utils, datasets <- training <- metrics <- pipeline <- top-level scripts and benchmarks;
  a module imports only its own package and the layers below it;
- no import cycle between files, counting the imports inside functions;
- no function over MAX_FUNCTION_LINES lines, and no mutable default argument.

`python tests/test_architecture.py` prints every finding instead of stopping at the first.
"""
import ast
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Rank of each package: a module may import its own package and packages of a lower rank only.
LAYERS = {'dnnlib': 0, 'torch_utils': 1, 'datasets': 1, 'training': 2, 'metrics': 3, 'pipeline': 4}
TOP_RANK = 5  # Top-level scripts (train_ILS_64.py, legacy.py, ...) and benchmarks/.
MAX_FUNCTION_LINES = 80
MUTABLE_LITERALS = (ast.List, ast.Dict, ast.Set, ast.ListComp, ast.DictComp, ast.SetComp)


def product_files():
    """Every tracked Python file outside tests/ (or on disk, outside a git checkout)."""
    try:
        out = subprocess.run(['git', 'ls-files', '*.py'], cwd=ROOT, capture_output=True, text=True, check=True).stdout
        paths = out.split()
    except (OSError, subprocess.CalledProcessError):
        paths = [os.path.relpath(os.path.join(d, f), ROOT) for d, _, fs in os.walk(ROOT) for f in fs
                 if f.endswith('.py') and '.venv' not in d]
    return sorted(p for p in paths if not p.startswith('tests/') and os.path.isfile(os.path.join(ROOT, p)))


def module_name(path):
    parts = path[:-3].split('/')
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def parse_all():
    """{module name: (path, ast tree)} of the product."""
    trees = {}
    for path in product_files():
        with open(os.path.join(ROOT, path), encoding='utf-8') as f:
            trees[module_name(path)] = (path, ast.parse(f.read(), filename=path))
    return trees


def imported_modules(name, path, tree, known):
    """(target module, line) for every import of a product module, at any depth of the file."""
    package = name if path.endswith('__init__.py') else name.rpartition('.')[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')[:len(package.split('.')) - node.level + 1]
                base = '.'.join(anchor + ([base] if base else []))
            # `from pkg import mod` imports the module pkg.mod; `from mod import name` imports mod.
            targets = [f'{base}.{a.name}' if f'{base}.{a.name}' in known else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import a.b.c` of a module a.b with an attribute c.
                target = target.rpartition('.')[0]
            if target and target != name:
                yield target, node.lineno


def import_graph(trees):
    """{module: {imported module: first line}}."""
    graph = {}
    for name, (path, tree) in trees.items():
        edges = graph.setdefault(name, {})
        for target, line in imported_modules(name, path, tree, trees):
            edges.setdefault(target, line)
    return graph


def rank(module):
    return LAYERS.get(module.split('.')[0], TOP_RANK)


def layer_violations(graph):
    found = []
    for src, edges in graph.items():
        for dst, line in edges.items():
            same_package = src.split('.')[0] == dst.split('.')[0]
            if not same_package and rank(dst) >= rank(src):
                found.append(f'{src}:{line} imports {dst} (layer {rank(src)} may only import layers below it)')
    return found


def cycles(graph):
    """Strongly connected components with more than one node (Tarjan), each as a sorted list."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def package_graph(graph):
    packages = {}
    for src, edges in graph.items():
        for dst in edges:
            a, b = src.split('.')[0], dst.split('.')[0]
            if a != b:
                packages.setdefault(a, {})[b] = 1
            packages.setdefault(b, {})
    return packages


def functions(trees):
    """(qualified name, path, first line, length in lines) of every def, decorators not counted."""
    for name, (path, tree) in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield f'{name}.{node.name}', path, node.lineno, node.end_lineno - node.lineno + 1, node


def long_functions(trees, limit):
    return sorted(((n, f'{p}:{line}', length) for n, p, line, length, _ in functions(trees) if length > limit),
                  key=lambda t: -t[2])


def mutable_defaults(trees):
    found = []
    for name, path, line, _, node in functions(trees):
        for default in node.args.defaults + [d for d in node.args.kw_defaults if d is not None]:
            is_call = isinstance(default, ast.Call) and getattr(default.func, 'id', None) in ('list', 'dict', 'set')
            if isinstance(default, MUTABLE_LITERALS) or is_call:
                found.append(f'{path}:{default.lineno} {name}: mutable default {ast.unparse(default)}')
    return found


def lazy_project_imports(trees):
    """Imports of product modules inside a function (they hide an import order the layers should make plain)."""
    found = []
    for name, (path, tree) in trees.items():
        for func in ast.walk(tree):
            if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            sub = ast.Module(body=func.body, type_ignores=[])
            for target, line in imported_modules(name, path, sub, trees):
                found.append(f'{path}:{line} {name}.{func.name} imports {target}')
    return sorted(set(found))


# ------------------------------------------------------------------------------------------------------------------

TREES = parse_all()
GRAPH = import_graph(TREES)


def test_the_checker_sees_the_whole_product():
    assert {'training.training_loop', 'metrics.seg_eval', 'datasets.dataset', 'torch_utils.ops.bias_act',
            'train_ILS_64', 'legacy'} <= set(TREES)
    assert 'training.networks' in GRAPH['training.loss']


def test_layers_are_one_way():
    assert layer_violations(GRAPH) == []


def test_no_import_cycle_between_files():
    assert cycles(GRAPH) == []


def test_no_import_cycle_between_packages():
    assert cycles(package_graph(GRAPH)) == []


def test_no_lazy_imports_of_project_modules():
    assert lazy_project_imports(TREES) == []


def test_no_long_functions():
    assert long_functions(TREES, MAX_FUNCTION_LINES) == []


def test_no_mutable_default_arguments():
    assert mutable_defaults(TREES) == []


def test_the_checker_finds_a_cycle_and_an_upward_import():
    graph = {'training.a': {'metrics.b': 3}, 'metrics.b': {'training.a': 5}}
    assert cycles(graph) == [['metrics.b', 'training.a']]
    assert layer_violations(graph) == ['training.a:3 imports metrics.b (layer 2 may only import layers below it)']


if __name__ == '__main__':
    print(f'{len(TREES)} product modules, {sum(len(e) for e in GRAPH.values())} import edges between them')
    for title, items in [('layer violations', layer_violations(GRAPH)),
                         ('import cycles between files', [' <-> '.join(c) for c in cycles(GRAPH)]),
                         ('import cycles between packages', [' <-> '.join(c) for c in cycles(package_graph(GRAPH))]),
                         ('lazy imports of project modules', lazy_project_imports(TREES)),
                         ('mutable default arguments', mutable_defaults(TREES)),
                         (f'functions over 60 lines (limit {MAX_FUNCTION_LINES})',
                          [f'{n:55s} {where:40s} {length:4d}' for n, where, length in long_functions(TREES, 60)])]:
        print(f'\n{title}: {len(items)}')
        for item in items:
            print(f'  {item}')
