"""Rebuild the results section of benchmarks/README.md from the last runs: each benchmark's
JSON (machine, date, commit) and the table it printed (benchmarks/results/<name>.log). Nothing
here is typed by hand.   python benchmarks/report.py"""

import json
import re
from pathlib import Path

HERE = Path(__file__).resolve().parent
ORDER = ['overhead', 'speedup', 'refine', 'learning_curve', 'shape_memory', 'train_throughput', 'folder_throughput',
         'video_flicker', 'app_latency', 'tuning', 'heads', 'real_gap']
BEGIN, END = '<!-- results:begin -->', '<!-- results:end -->'


def last_table(log):
    """What the benchmark printed from its first table (a header line over a '---- ----' rule) to
    the end: the tables and the verdicts, without progress lines."""
    lines = [l.rstrip() for l in log.splitlines()]
    rules = [i for i, l in enumerate(lines) if re.fullmatch(r'-{2,}(\s+-{2,})*', l.strip() or 'x')]
    start = max(rules[0] - 1, 0) if rules else max(len(lines) - 30, 0)
    return '\n'.join(l for l in lines[start:] if not l.lower().startswith('wrote ')).strip()


def headline(name):
    """The last table a benchmark printed and its verdict line, for the main README."""
    log = HERE / 'results' / f'{name}.log'
    if not log.exists():
        return ''
    lines = [l.rstrip() for l in log.read_text().splitlines()]
    rules = [i for i, l in enumerate(lines) if re.fullmatch(r'-{2,}(\s+-{2,})*', l.strip() or 'x')]
    if not rules:
        return ''
    start, end = rules[-1] - 1, rules[-1] + 1
    while end < len(lines) and lines[end].strip():
        end += 1
    table = [l for l in lines[start:end] if not l.lower().startswith('wrote ')]
    verdict = [l for l in lines if l.startswith('Target') and l not in table]
    return '\n'.join(table + verdict)


def section(name):
    js = HERE / f'{name}.json'
    quick = False
    if not js.exists():
        js, quick = HERE / f'{name}.quick.json', True
    log = HERE / 'results' / f'{name}.log'
    if not js.exists() or not log.exists():
        return f'### {name}\n\nNot run yet: `python benchmarks/{name}.py`\n'
    d = json.loads(js.read_text())
    m = d.get('machine', {})
    head = (f'### {name.replace(".gpu", " (GPU)")}{" (--quick run)" if quick else ""}\n\n'
            f'{m.get("date", "?")}, commit {m.get("commit", "?")}, {m.get("cpu", "?")} '
            f'({m.get("cpu_cores", "?")} cores, {m.get("torch_threads", "?")} torch threads), torch {m.get("torch", "?")}, '
            f'device {m.get("device", "?")}{" (" + m["gpu"] + ")" if m.get("gpu") else ""}. Command: '
            f'`{d.get("command") or f"python benchmarks/{name}.py" + (" --quick" if quick else "")}`\n')
    return head + '\n```\n' + last_table(log.read_text()) + '\n```\n'


def main():
    readme = HERE / 'README.md'
    text = readme.read_text()
    # Each benchmark's CPU results, then its GPU results where it was run on one (<name>.gpu.json).
    names = [n for name in ORDER for n in (name, f'{name}.gpu') if n == name or (HERE / f'{n}.json').exists()]
    body = '\n'.join(section(n) for n in names)
    text = re.sub(re.escape(BEGIN) + '.*' + re.escape(END), lambda _: f'{BEGIN}\n{body}\n{END}', text, flags=re.S)
    readme.write_text(text)
    print(f'updated {readme}')
    main_readme = HERE.parent / 'README.md'
    heads = [f'{n.replace(".gpu", " (GPU)")}:\n{h}' for n in names if (h := headline(n))]
    block = '```\n' + '\n\n'.join(heads) + '\n```' if heads else 'No results yet.'
    text = main_readme.read_text()
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + '.*' + re.escape(END), lambda _: f'{BEGIN}\n{block}\n{END}', text, flags=re.S)
    # A section of the README that shows one benchmark's table: <!-- results:NAME:begin --> ... end.
    for name in names:
        begin, end = f'<!-- results:{name}:begin -->', f'<!-- results:{name}:end -->'
        if begin in text and (h := headline(name)):
            text = re.sub(re.escape(begin) + '.*?' + re.escape(end), lambda _: f'{begin}\n```\n{h}\n```\n{end}', text,
                          flags=re.S)
    main_readme.write_text(text)
    print(f'updated {main_readme}')


if __name__ == '__main__':
    main()
