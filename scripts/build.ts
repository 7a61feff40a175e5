/**
 * Builds dist/: the JavaScript as two bundles (the library and the `wayfind` command) sharing
 * chunks, the type declarations per module from tsc, as before.
 *
 * Why bundles: Node loads every ES module of a package as its own file (resolve, stat, read,
 * compile, link), and by the cost of starting a process that was most of what wayfind added to
 * `import('undici')` (73 modules; docs/performance.md#startup). The sources stay one job per
 * file; only what is shipped is joined. Dependencies are never bundled: they are installed
 * beside wayfind and load on their own terms (etcd3 and its gRPC stack on first use, see
 * src/registry/etcd/load.ts).
 */
import { spawnSync } from 'node:child_process'
import { rmSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { build } from 'esbuild'

const root = fileURLToPath(new URL('..', import.meta.url))

// Files of an earlier build (per-module JavaScript included) must not linger and be packed.
rmSync(new URL('../dist', import.meta.url), { recursive: true, force: true })

const tsc = spawnSync(
  process.execPath,
  [
    fileURLToPath(import.meta.resolve('typescript/bin/tsc')),
    '-p',
    'tsconfig.build.json',
    '--emitDeclarationOnly',
  ],
  { cwd: root, stdio: 'inherit' },
)
if (tsc.status !== 0) process.exit(tsc.status ?? 1)

await build({
  absWorkingDir: root,
  entryPoints: { index: 'src/index.ts', 'cli/main': 'src/cli/main.ts' },
  outdir: 'dist',
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'node',
  target: 'node20',
  packages: 'external',
  sourcemap: true,
  // No `keepNames`: it wraps every named function and class in a call that sets its name, also
  // closures made per request. Errors name themselves after their class (errors.ts), and esbuild
  // renames a top-level name only when two modules clash; test/e2e/package.test.ts checks that
  // every exported error class kept its name.
  logLevel: 'warning',
})
