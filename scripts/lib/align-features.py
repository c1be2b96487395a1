#!/usr/bin/env python3
"""Writes <work>/feature-alignment/Cargo.toml: a crate of the generated templates' workspace that
depends on each package the templates and the repository's workspace share, with the features the
repository's build gives it.

    align-features.py <repository root> <templates' workspace>

Cargo compiles a package once per set of features. The repository's tests unify features over
every member and every target (tokio with `test-util`, bot-core with `nats`); the templates alone
would ask for fewer, and so compile tokio and everything above it a second time. With this crate
in their workspace they ask for the same sets, and the target directory's builds are reused. It
runs again until nothing differs, since a feature may bring in an optional dependency.
"""
import json, subprocess, sys, os
root, work = sys.argv[1], sys.argv[2]
# This machine's target only: other platforms' packages are not downloaded, and not built.
HOST = next(line.split()[1] for line in subprocess.run(['rustc', '-vV'], capture_output=True,
    text=True, check=True).stdout.splitlines() if line.startswith('host:'))

def meta(d, extra):
    out = subprocess.run(['cargo','metadata','--offline','--format-version','1',
                          '--filter-platform', HOST]+extra, cwd=d, capture_output=True, text=True, check=True).stdout
    m = json.loads(out)
    pk = {p['id']: p for p in m['packages']}
    res = {}
    for n in m['resolve']['nodes']:
        p = pk[n['id']]
        # Features naming a platform-specific optional dependency (tokio's `windows-sys`):
        # metadata lists them, the build on this platform does not.
        other_platforms = {d.get('rename') or d['name'] for d in p['dependencies']
                           if d['optional'] and d['target']}
        res[(p['name'], p['version'])] = (set(n['features']) - other_platforms,
                                          set(p['features'].keys()))
    return res
main = meta(root, ['--all-features'])
lines = []
for i in range(4):
    tpl = meta(work, [])
    deps = {}
    for key, (feats, declared) in tpl.items():
        if key in main and main[key][0] != feats and key[0] != 'feature-alignment':
            want = sorted(f for f in main[key][0] if f in declared and f != 'default')
            deps[key] = (want, 'default' in main[key][0])
    if not deps and i > 0:
        break
    for (name, ver), (want, default) in sorted(deps.items()):
        alias = f"{name}-{ver}".replace('.', '_').replace('+','_')
        lines.append(f'{alias} = {{ package = "{name}", version = "={ver}", default-features = {str(default).lower()}, features = {json.dumps(want)} }}')
    lines = sorted(set(lines))
    with open(os.path.join(work, 'feature-alignment', 'Cargo.toml'), 'w') as f:
        f.write('[package]\nname = "feature-alignment"\nversion = "0.0.0"\nedition = "2024"\npublish = false\n\n[lib]\npath = "lib.rs"\n\n[dependencies]\n' + '\n'.join(lines) + '\n')
print(f"templates: {len(lines)} packages aligned with the workspace's features")
