/**
 * The repository must explain itself: no file may send its reader to a document that is not in
 * it (design notes kept outside the repository) or to a path on somebody's machine. Rationale
 * lives in docs/design/ and comments point there or to public links.
 *
 * Code that builds temporary paths at run time (`join(tmpdir(), ...)`) is fine: only literal
 * absolute paths are refused.
 */
import { execFileSync } from 'node:child_process'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join, relative, sep } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SKIPPED_DIRS = new Set(['node_modules', 'dist', '.git'])
const SKIPPED_FILES = new Set(['package-lock.json'])

/** Names of design notes that never were part of the repository (spelled so this file passes). */
const OUTSIDE_NOTES = ['DESIGN', 'STYLE', 'ETCD', 'CONSUL', 'DISPATCH'].map((n) => `${n}.md`)

/** What a reader of the repository cannot follow, each with why. */
const RULES: readonly { readonly pattern: RegExp; readonly why: string }[] = [
  {
    pattern: new RegExp(`\\b(?:${OUTSIDE_NOTES.map((n) => n.replace('.', '\\.')).join('|')})\\b`),
    why: 'names a design note that is not in the repository (point to docs/design/ instead)',
  },
  {
    pattern: /\.\.\/shared\b/,
    why: 'points to a directory outside the repository',
  },
  {
    // An absolute path starts the token: not `docs/root/intro` (Envoy's docs tree), not a URL.
    pattern: /(?<![\w.~:/-])\/(?:work|root|Users\/[\w.-]+|home\/[\w.-]+|tmp\/[\w.-]+)\//,
    why: 'names an absolute path on a development machine',
  },
]

/** Tracked files and new ones not ignored (so an uncommitted file is checked too). */
function repositoryFiles(): string[] {
  try {
    const out = execFileSync(
      'git',
      ['ls-files', '-z', '--cached', '--others', '--exclude-standard'],
      { cwd: ROOT, encoding: 'utf8', maxBuffer: 64 * 1024 * 1024 },
    )
    return out.split('\0').filter((f) => f !== '')
  } catch {
    return walk(ROOT) // not a git checkout (an unpacked archive): every file but the skipped dirs
  }
}

function walk(dir: string): string[] {
  const files: string[] = []
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    if (SKIPPED_DIRS.has(entry.name)) continue
    const path = join(dir, entry.name)
    if (entry.isDirectory()) files.push(...walk(path))
    else if (entry.isFile()) files.push(relative(ROOT, path).split(sep).join('/'))
  }
  return files
}

/** An absolute path built at run time, so that this file holds no such literal itself. */
function absolute(...parts: string[]): string {
  return ['', ...parts].join('/')
}

function checked(file: string): boolean {
  const parts = file.split('/')
  if (parts.some((p) => SKIPPED_DIRS.has(p))) return false
  return !SKIPPED_FILES.has(parts[parts.length - 1] ?? '')
}

interface Finding {
  readonly file: string
  readonly line: number
  readonly text: string
  readonly why: string
}

function findings(file: string, text: string): Finding[] {
  const found: Finding[] = []
  const lines = text.split('\n')
  lines.forEach((line, i) => {
    for (const rule of RULES) {
      if (rule.pattern.test(line)) {
        found.push({ file, line: i + 1, text: line.trim().slice(0, 160), why: rule.why })
      }
    }
  })
  return found
}

function read(file: string): string | undefined {
  const path = join(ROOT, file)
  let size: number
  try {
    size = statSync(path).size
  } catch {
    return undefined // deleted in the work tree but still tracked
  }
  if (size > 4 * 1024 * 1024) return undefined
  const bytes = readFileSync(path)
  if (bytes.includes(0)) return undefined // binary
  return bytes.toString('utf8')
}

describe('the repository explains itself', () => {
  it('finds the files to check', () => {
    const files = repositoryFiles().filter(checked)
    expect(files).toContain('README.md')
    expect(files).toContain('src/index.ts')
    expect(files.some((f) => f.startsWith('node_modules/'))).toBe(false)
  })

  it('cites no design note outside the repository and no machine path', () => {
    const found = repositoryFiles()
      .filter(checked)
      .flatMap((file) => {
        const text = read(file)
        return text === undefined ? [] : findings(file, text)
      })
    const report = found.map((f) => `${f.file}:${String(f.line)}: ${f.why}\n    ${f.text}`)
    expect(report, report.join('\n')).toEqual([])
  })

  it('catches each kind of reference (the rules are not vacuous)', () => {
    const samples = [
      ...OUTSIDE_NOTES.map((n) => `see ${n} §1.4`),
      `as in ${['..', 'shared', 'notes'].join('/')}`,
      `semantics in \`${absolute('work', 'notes.md')}\``,
      `a home dir ${absolute('home', 'dev', 'wayfind', 'README.md')}`,
      `scratch file ${absolute('tmp', 'probe', 'out.json')}`,
      `root's ${absolute('root', 'wayfind')}`,
    ]
    for (const sample of samples) {
      expect(findings('sample', sample), sample).toHaveLength(1)
    }
    const fine = [
      "mkdtempSync(join(tmpdir(), 'wayfind-etcd-'))",
      'Envoy `docs/root/intro/arch_overview/upstream/outlier.rst`',
      'see docs/design/consul.md#blocking-queries and docs/consul.md',
      'https://github.com/nodejs/undici/tree/v7.x/lib/dispatcher',
      'ETCD_BIN and CONSUL_HTTP_ADDR',
    ]
    for (const sample of fine) {
      expect(findings('sample', sample), sample).toEqual([])
    }
  })
})
