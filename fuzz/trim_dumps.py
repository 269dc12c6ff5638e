#!/usr/bin/env python3
"""Seed corpus for the `dump` target: each real dump cut down to what the parser reads (the
header sections, the first two CPU blocks, CPU #0's MSR section), so that seeds stay small
enough to fuzz quickly. Usage: trim_dumps.py <dumps dir> <out dir>."""
import os, re, sys

src, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)
header = re.compile(r'^------\[ (.*) \]------\s*$')
for name in sorted(os.listdir(src)):
    if not name.endswith('.txt'):
        continue
    lines = open(os.path.join(src, name), encoding='utf-8').read().split('\n')
    kept, blocks, keep = [], 0, True
    bare_blocks, in_bare_block = 0, False
    seen_header = False
    for line in lines:
        m = header.match(line.rstrip('\r'))
        if m:
            seen_header = True
            sec = m.group(1)
            cpu = re.search(r'Logical CPU #(\d+)$', sec)
            if cpu and 'MSR' not in sec:
                blocks += 1
                keep = blocks <= 2
            elif cpu and 'MSR' in sec:
                keep = int(cpu.group(1)) == 0
            else:
                keep = sec in ('MSR Registers', 'Versions', 'CPU Info') or 'Registers' in sec and 'MSR' in sec
        elif not seen_header:
            # Formats C/D/E: keep the first two blank-line-separated blocks.
            is_block_line = line.startswith('CPUID ') or line.startswith('CPU#')
            if is_block_line and not in_bare_block:
                in_bare_block = True
                bare_blocks += 1
            elif not line.strip():
                in_bare_block = False
            keep = bare_blocks <= 2
        if keep:
            kept.append(line)
    text = '\n'.join(kept)
    with open(os.path.join(out, name), 'w', encoding='utf-8') as f:
        f.write(text)
    print(f'{name}: {len(text)} bytes')
