/**
 * The package as npm would publish it: every relative link in README.md and docs/ points at a
 * file that is in the tarball (so nothing breaks on the registry page), the publishing fields
 * are present, and a CommonJS file can `require()` the built ES module on this Node (≥ 20.19,
 * where `require(esm)` is unflagged), as the README says.
 */
import { execFile } from 'node:child_process'
import { mkdtemp, mkdir, readFile, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, normalize, posix } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL('../..', import.meta.url))

interface PackFile {
  readonly path: string
}

/** Relative link targets of a Markdown file (inline links and images), without anchors. */
function relativeLinks(markdown: string): string[] {
  // Code blocks may contain `](` in code; links live in prose.
  const prose = markdown.replace(/```[\s\S]*?```/g, '')
  const links: string[] = []
  for (const m of prose.matchAll(/\]\(([^)\s]+)(?:\s+"[^"]*")?\)/g)) {
    const target = m[1] ?? ''
    if (/^[a-z][a-z0-9+.-]*:/i.test(target) || target.startsWith('#')) continue
    links.push(target.split('#')[0] ?? '')
  }
  return links.filter((l) => l !== '')
}

describe('the published package', () => {
  let files: Set<string>
  let pkg: Record<string, unknown>

  beforeAll(async () => {
    const { stdout } = await run('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
      cwd: ROOT,
      maxBuffer: 16 * 1024 * 1024,
    })
    const [packed] = JSON.parse(stdout) as [{ files: PackFile[] }]
    files = new Set(packed.files.map((f) => f.path))
    pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as Record<string, unknown>
  })

  it('ships every file that README.md and docs/ link to', async () => {
    const markdown = [...files].filter(
      (f) => f === 'README.md' || (f.startsWith('docs/') && f.endsWith('.md')),
    )
    expect(markdown).toContain('README.md')
    expect(markdown).toContain('docs/errors.md')
    const broken: string[] = []
    let checked = 0
    for (const file of markdown) {
      const text = await readFile(join(ROOT, file), 'utf8')
      for (const link of relativeLinks(text)) {
        const target = posix.normalize(posix.join(posix.dirname(file), decodeURI(link)))
        checked++
        if (!files.has(target)) broken.push(`${file} → ${link}`)
      }
    }
    expect(checked).toBeGreaterThan(5)
    expect(broken).toEqual([])
  })

  it('ships the JavaScript as two bundles and their chunks, with declarations per module', () => {
    const js = [...files].filter((f) => f.endsWith('.js')).sort()
    expect(js).toContain('dist/index.js')
    expect(js).toContain('dist/cli/main.js')
    // Nothing else: a per-module file left by an older build would be shipped and never used.
    expect(js.filter((f) => !/^dist\/(index|cli\/main|chunks\/[\w-]+)\.js$/.test(f))).toEqual([])
    expect(files).toContain('dist/index.d.ts')
    expect(files).toContain('dist/registry/etcd/provider.d.ts')
  })

  it('every error class the built entry exports is named after itself', async () => {
    // Errors set `name` from their class; a bundler that renamed a class would change it.
    const entry = (await import(pathToFileURL(join(ROOT, 'dist', 'index.js')).href)) as Record<
      string,
      unknown
    >
    const errors = Object.entries(entry).filter(
      ([, v]) => typeof v === 'function' && v.prototype instanceof Error,
    )
    expect(errors.length).toBeGreaterThan(5)
    for (const [exported, cls] of errors) expect((cls as { name: string }).name).toBe(exported)
  })

  it('names its repository, homepage and issue tracker', () => {
    expect(pkg.repository).toMatchObject({ type: 'git', url: expect.stringMatching(/github\.com/) })
    expect(pkg.homepage).toMatch(/^https:\/\//)
    expect(pkg.bugs).toMatchObject({ url: expect.stringMatching(/^https:\/\/.*\/issues$/) })
  })

  describe('from CommonJS', () => {
    let dir: string

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'wayfind-cjs-'))
      // A project that depends on wayfind: node_modules/wayfind is this package (its dist).
      await mkdir(join(dir, 'node_modules'))
      await symlink(normalize(ROOT), join(dir, 'node_modules', 'wayfind'), 'dir')
      await writeFile(join(dir, 'package.json'), '{ "name": "cjs-app", "type": "commonjs" }\n')
    })

    afterAll(async () => {
      await rm(dir, { recursive: true, force: true })
    })

    it('require("wayfind") works without flags or warnings, as the README says', async () => {
      const script = join(dir, 'app.cjs')
      await writeFile(
        script,
        [
          "const { createWayfind, memoryRegistry } = require('wayfind')",
          'const registry = memoryRegistry()',
          "registry.put('payments', { id: 'p1', host: '127.0.0.1', port: 8080 })",
          'const wf = createWayfind({ registry })',
          "wf.resolve('payments', { timeoutMs: 2000 })",
          '  .then((found) => { console.log(found.map((i) => i.id).join(",")); return wf.close() })',
        ].join('\n'),
      )
      const { stdout, stderr } = await run(process.execPath, [script], { cwd: dirname(script) })
      expect(stdout.trim()).toBe('p1')
      expect(stderr).toBe('')
    })
  })
})
