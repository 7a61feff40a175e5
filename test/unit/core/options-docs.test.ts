/**
 * Every option that README.md and docs/ name for an entry point exists in that entry point's
 * schema, so the docs cannot drift from the code again. Options are found in three places:
 * call sites with object literals (`consul({ url, token })`, `wf.register({...}, {...})`, in
 * code blocks and inline code alike), option tables (the first column of a table headed
 * "Option" in docs/consul.md and docs/etcd.md), and dotted paths in inline code
 * (`dispatcher.retry.connectRetries`, `check.ttlMs`).
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join, relative } from 'node:path'
import { describe, expect, it } from 'vitest'
import { optionPaths, type Schema } from '../../../src/core/options/schema.js'
import { resolveSchema } from '../../../src/core/resolve-options.js'
import { dispatcherSchema } from '../../../src/dispatcher/options.js'
import { wayfindSchema } from '../../../src/options.js'
import { memorySchema } from '../../../src/registry/memory.js'
import { consulSchema } from '../../../src/registry/consul/options.js'
import { etcdSchema } from '../../../src/registry/etcd/options.js'
import {
  deregisterSchema,
  healthHandlerSchema,
  healthServerSchema,
  registerOptionsSchema,
  registrationSchema,
} from '../../../src/registration/options.js'

const ROOT = join(import.meta.dirname, '..', '..', '..')

/** Which argument of which call takes which schema. */
const CALLS: Readonly<Record<string, readonly (Schema | undefined)[]>> = {
  createWayfind: [wayfindSchema],
  consul: [consulSchema],
  etcd: [etcdSchema],
  register: [registrationSchema, registerOptionsSchema],
  resolve: [undefined, resolveSchema],
  deregister: [deregisterSchema],
  startHealthServer: [healthServerSchema],
  healthHandler: [healthHandlerSchema],
  memoryRegistry: [memorySchema],
}

/** Dotted paths in inline code, and the schema they are relative to. */
const DOTTED: readonly [RegExp, Schema][] = [
  // `dispatcher.request()` and friends are undici's methods, not options.
  [
    /`(dispatcher\.(?!(?:request|dispatch|stream|pipeline|connect|upgrade|close|destroy|compose)\()[A-Za-z][\w.]*)/g,
    wayfindSchema,
  ],
  [/`((?:retry|outlier)\.[A-Za-z][\w.]*)/g, dispatcherSchema],
  [/`(check\.[A-Za-z][\w.]*)/g, registrationSchema],
]

/** Names ending like a source or doc file. */
const FILE_NAME = /\.(?:[cm]?[jt]s|md|json)$/

/** Tables of options, per file. */
const TABLES: Readonly<Record<string, Schema>> = {
  'docs/consul.md': consulSchema,
  'docs/etcd.md': etcdSchema,
}

/** Options whose contents belong to another library (undici's Pool options). */
const OPAQUE = new Set(['dispatcher.pool', 'pool'])

interface Reference {
  readonly file: string
  readonly line: number
  readonly path: string
  readonly schema: Schema
}

function markdownFiles(): string[] {
  const docs = readdirSync(join(ROOT, 'docs'), { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.md'))
    .map((f) => join(ROOT, 'docs', f))
  return [join(ROOT, 'README.md'), ...docs]
}

/** Index just past the string literal or comment starting at `i`, or `i` when there is none. */
function skipLiteral(text: string, i: number): number {
  const c = text[i]
  if (c === '/' && text[i + 1] === '/') {
    const end = text.indexOf('\n', i)
    return end === -1 ? text.length : end
  }
  if (c === '/' && text[i + 1] === '*') {
    const end = text.indexOf('*/', i + 2)
    return end === -1 ? text.length : end + 2
  }
  if (c === "'" || c === '"' || c === '`') {
    for (let j = i + 1; j < text.length; j++) {
      if (text[j] === '\\') j++
      else if (text[j] === c) return j + 1
      else if (text[j] === '\n' && c !== '`') return j
    }
    return text.length
  }
  return i
}

/**
 * The keys of the object literal starting at `open` (a `{`), nested objects as dotted paths:
 * `{ a, b: 1, c: { d } }` → a, b, c, c.d. Returns the keys and the index past the `}`.
 */
export function objectKeys(
  text: string,
  open: number,
  prefix = '',
): { keys: string[]; end: number } {
  const keys: string[] = []
  let i = open + 1
  let depth = 1
  let expectKey = true
  while (i < text.length && depth > 0) {
    const skipped = skipLiteral(text, i)
    if (skipped !== i) {
      // A string is a value; a comment is neither key nor value.
      if (text[i] !== '/') expectKey = false
      i = skipped
      continue
    }
    const c = text[i] ?? ''
    if (c === '{' || c === '[' || c === '(') depth++
    else if (c === '}' || c === ']' || c === ')') depth--
    else if (c === ',' && depth === 1) expectKey = true
    else if (depth === 1 && expectKey && /[A-Za-z_$]/.test(c)) {
      const name = /^[A-Za-z_$][\w$]*/.exec(text.slice(i))?.[0] ?? ''
      let j = i + name.length
      while (/\s/.test(text[j] ?? '')) j++
      const next = text[j]
      const path = prefix === '' ? name : `${prefix}.${name}`
      if (next === ':') {
        keys.push(path)
        let k = j + 1
        while (/\s/.test(text[k] ?? '')) k++
        if (text[k] === '{') {
          const nested = objectKeys(text, k, path)
          keys.push(...nested.keys)
          i = nested.end
          expectKey = false
          continue
        }
      } else if (next === ',' || next === '}') keys.push(path)
      expectKey = false
      i = j
      continue
    } else if (!/\s/.test(c)) expectKey = false
    i++
  }
  return { keys, end: i }
}

/** The object-literal arguments of every call to a known entry point in `text`. */
export function callReferences(
  text: string,
): { call: string; arg: number; keys: string[]; at: number }[] {
  const found: { call: string; arg: number; keys: string[]; at: number }[] = []
  const re = new RegExp(`\\b(${Object.keys(CALLS).join('|')})\\(`, 'g')
  for (const m of text.matchAll(re)) {
    const call = m[1] ?? ''
    let i = m.index + m[0].length
    let arg = 0
    let depth = 0
    while (i < text.length) {
      const skipped = skipLiteral(text, i)
      if (skipped !== i) {
        i = skipped
        continue
      }
      const c = text[i]
      if (c === '{' && depth === 0) {
        const { keys, end } = objectKeys(text, i)
        found.push({ call, arg, keys, at: i })
        i = end
        continue
      }
      if (c === '(' || c === '[' || c === '{') depth++
      else if (c === ')' || c === ']' || c === '}') {
        if (depth === 0) break
        depth--
      } else if (c === ',' && depth === 0) arg++
      i++
    }
  }
  return found
}

/** The names in the first column of a table headed "Option". */
function tableOptions(text: string): { name: string; at: number }[] {
  const found: { name: string; at: number }[] = []
  let inTable = false
  let offset = 0
  for (const line of text.split('\n')) {
    if (/^\|\s*option\s*\|/i.test(line)) inTable = true
    else if (!line.startsWith('|')) inTable = false
    else if (inTable && !/^\|\s*-/.test(line)) {
      const first = line.split('|')[1] ?? ''
      for (const m of first.matchAll(/`([A-Za-z][\w.]*)`/g))
        found.push({ name: m[1] ?? '', at: offset })
    }
    offset += line.length + 1
  }
  return found
}

function lineOf(text: string, index: number): number {
  return text.slice(0, index).split('\n').length
}

function references(): Reference[] {
  const refs: Reference[] = []
  for (const abs of markdownFiles()) {
    const file = relative(ROOT, abs)
    const text = readFileSync(abs, 'utf8')
    for (const { call, arg, keys, at } of callReferences(text)) {
      const schema = CALLS[call]?.[arg]
      if (schema !== undefined)
        for (const path of keys) refs.push({ file, line: lineOf(text, at), path, schema })
    }
    for (const [re, schema] of DOTTED)
      for (const m of text.matchAll(re))
        // A file name (`dispatcher.js` in undici's sources) is not an option path.
        if (!FILE_NAME.test(m[1] ?? ''))
          refs.push({ file, line: lineOf(text, m.index), path: m[1] ?? '', schema })
    const table = TABLES[file]
    if (table !== undefined)
      for (const { name, at } of tableOptions(text))
        refs.push({ file, line: lineOf(text, at), path: name, schema: table })
  }
  return refs
}

function known(schema: Schema, path: string): boolean {
  const paths = new Set(optionPaths(schema))
  if (paths.has(path)) return true
  // Inside an option owned by another library: its own keys are not ours to check.
  const parts = path.split('.')
  for (let n = parts.length - 1; n > 0; n--) {
    const head = parts.slice(0, n).join('.')
    if (paths.has(head)) return OPAQUE.has(head) || OPAQUE.has(`dispatcher.${head}`)
  }
  return false
}

describe('options named in README.md and docs/', () => {
  it('parses object literals, shorthand lists and nested options', () => {
    const text =
      'consul({ url, token, datacenter })\n' +
      "createWayfind({\n  registry: etcd({ hosts: ['a:1'] }), // or consul({ tokn })\n" +
      "  strategy: 'least-loaded', // or 'round-robin', or a Strategy object\n" +
      '  dispatcher: { retry: { backoff: { initialMs: 5 } }, route: (h) => ({ x: h }) },\n})\n' +
      "wf.register({ name: 'a', check: { ttlMs: 1 } }, { handleSignals: true })\n"
    const refs = callReferences(text).map((r) => `${r.call}#${r.arg}: ${r.keys.join(' ')}`)
    expect(refs).toEqual([
      'consul#0: url token datacenter',
      'createWayfind#0: registry strategy dispatcher dispatcher.retry dispatcher.retry.backoff dispatcher.retry.backoff.initialMs dispatcher.route',
      'etcd#0: hosts',
      'consul#0: tokn',
      'register#0: name check check.ttlMs',
      'register#1: handleSignals',
    ])
    expect(known(consulSchema, 'tokn')).toBe(false)
    expect(known(wayfindSchema, 'dispatcher.retry.backoff.initialMs')).toBe(true)
    expect(known(wayfindSchema, 'dispatcher.pool.connect')).toBe(true)
    expect(known(consulSchema, 'dc')).toBe(false)
  })

  it("every one exists in its entry point's schema", () => {
    const refs = references()
    // The scan must find the docs' options, or this test would pass on nothing.
    expect(refs.length).toBeGreaterThan(60)
    for (const schema of [
      wayfindSchema,
      consulSchema,
      etcdSchema,
      registrationSchema,
      resolveSchema,
    ])
      expect(refs.some((r) => r.schema === schema)).toBe(true)
    const unknown = refs
      .filter((r) => !known(r.schema, r.path))
      .map((r) => `${r.file}:${r.line}: ${r.path}`)
    expect(unknown).toEqual([])
  })
})
