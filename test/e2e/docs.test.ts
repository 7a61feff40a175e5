/**
 * The code in README.md and docs/ is tested, so that it cannot rot (the quick start once closed
 * its own client, and so deregistered, as soon as the module finished evaluating).
 *
 * Every js/ts code block must be marked by an HTML comment on the line before it:
 * - `<!-- doctest: server -->`: a long-running service (the quick start). Run verbatim as an
 *   `.mjs` file against the Consul test server; it must stay registered after start, answer, and
 *   drain on SIGTERM.
 * - `<!-- doctest: typecheck -->`: a self-contained module, type-checked with the project's
 *   strict settings against wayfind's types.
 * - `<!-- doctest: fragment -->`: an excerpt that cannot run on its own (framework code, a
 *   snippet using names from the text). Say so in the text.
 * The `server` blocks are type-checked too (as JavaScript, with checkJs).
 */
import { execFile } from 'node:child_process'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { createServer, type Server } from 'node:http'
import { once } from 'node:events'
import type { AddressInfo } from 'node:net'
import { join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { consul, createWayfind } from '../../src/index.js'
import { startConsulServer, type ConsulTestServer } from '../support/consul-server/index.js'
import { freePort } from '../support/etcd.js'
import { waitFor, withDeadline } from '../support/wait.js'
import { startChild } from './child.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const OUT = join(ROOT, '.tmp', 'doc-blocks')
const FROM_SOURCE = fileURLToPath(new URL('./fixtures/wayfind-from-source.ts', import.meta.url))
const CODE_LANGS = new Set(['js', 'mjs', 'javascript', 'ts', 'typescript'])
const KINDS = new Set(['server', 'typecheck', 'fragment'])

interface Block {
  readonly file: string
  readonly line: number
  readonly lang: string
  readonly kind: string | undefined
  readonly code: string
}

async function markdownFiles(): Promise<string[]> {
  const files = [join(ROOT, 'README.md')]
  const walk = async (dir: string): Promise<void> => {
    for (const e of await readdir(dir, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(dir, e.name))
      else if (e.name.endsWith('.md')) files.push(join(dir, e.name))
    }
  }
  await walk(join(ROOT, 'docs'))
  return files
}

async function extractBlocks(): Promise<Block[]> {
  const blocks: Block[] = []
  for (const path of await markdownFiles()) {
    const lines = (await readFile(path, 'utf8')).split('\n')
    for (let i = 0; i < lines.length; i++) {
      const open = /^(`{3,})\s*([\w-]*)/.exec(lines[i] ?? '')
      if (open === null) continue
      const fence = open[1] ?? '```'
      const lang = (open[2] ?? '').toLowerCase()
      let j = i + 1
      while (j < lines.length && !(lines[j] ?? '').startsWith(fence)) j++
      let k = i - 1
      while (k >= 0 && (lines[k] ?? '').trim() === '') k--
      const marker = /^<!--\s*doctest:\s*(\w+)\s*-->$/.exec((lines[k] ?? '').trim())
      blocks.push({
        file: relative(ROOT, path),
        line: i + 1,
        lang,
        kind: marker?.[1],
        code: lines.slice(i + 1, j).join('\n'),
      })
      i = j
    }
  }
  return blocks.filter((b) => CODE_LANGS.has(b.lang))
}

const isJs = (b: Block): boolean => ['js', 'mjs', 'javascript'].includes(b.lang)
const fileName = (b: Block): string =>
  `${b.file.replace(/[^\w]+/g, '_')}_${String(b.line)}.${isJs(b) ? 'mjs' : 'ts'}`

let blocks: Block[]
beforeAll(async () => {
  blocks = await extractBlocks()
  await rm(OUT, { recursive: true, force: true })
  await mkdir(OUT, { recursive: true })
  for (const b of blocks)
    if (b.kind === 'server' || b.kind === 'typecheck')
      await writeFile(join(OUT, fileName(b)), b.code)
})

describe('code blocks in README.md and docs/', () => {
  it('are all marked (server, typecheck or fragment), and the README has its quick start', () => {
    const unmarked = blocks
      .filter((b) => b.kind === undefined || !KINDS.has(b.kind))
      .map((b) => `${b.file}:${String(b.line)}`)
    expect(unmarked, 'add <!-- doctest: server|typecheck|fragment --> before these').toEqual([])
    expect(blocks.filter((b) => b.file === 'README.md' && b.kind === 'server')).toHaveLength(1)
  })

  it('type-check against wayfind’s types (strict mode)', async () => {
    const checked = blocks.filter((b) => b.kind === 'server' || b.kind === 'typecheck')
    expect(checked.length).toBeGreaterThan(1)
    const tsconfig = {
      extends: '../../tsconfig.json',
      compilerOptions: {
        noEmit: true,
        allowJs: true,
        checkJs: true,
        // A user's usual settings: `strict`, without this project's extra strictness.
        exactOptionalPropertyTypes: false,
        noUncheckedIndexedAccess: false,
        noUnusedLocals: false,
        noUnusedParameters: false,
        paths: { wayfind: ['../../src/index.ts'] },
      },
      include: checked.map(fileName),
    }
    await writeFile(join(OUT, 'tsconfig.json'), JSON.stringify(tsconfig, null, 2))
    const tsc = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc')
    const result = await promisify(execFile)(process.execPath, [tsc, '-p', OUT]).then(
      () => '',
      (err: unknown) => (err as { stdout?: string }).stdout ?? 'tsc failed',
    )
    expect(result).toBe('')
  })

  it('the quick start parses as plain .mjs on this Node (no TypeScript, no `await using`)', async () => {
    const quick = blocks.find((b) => b.file === 'README.md' && b.kind === 'server')
    expect(quick).toBeDefined()
    const check = await promisify(execFile)(process.execPath, [
      '--check',
      join(OUT, fileName(quick as Block)),
    ]).then(
      () => '',
      (err: unknown) => (err as { stderr?: string }).stderr ?? 'node --check failed',
    )
    expect(check).toBe('')
  })
})

describe('the README quick start, run verbatim against the Consul test server', () => {
  let consulServer: ConsulTestServer
  let payments: Server
  beforeAll(async () => {
    consulServer = await startConsulServer()
    payments = createServer((req, res) => {
      req.resume()
      res.end('charged')
    })
    payments.listen(0, '127.0.0.1')
    await once(payments, 'listening')
    consulServer.registerService({
      id: 'payments-1',
      name: 'payments',
      address: '127.0.0.1',
      port: (payments.address() as AddressInfo).port,
    })
  })
  afterAll(async () => {
    payments.close()
    await consulServer.close()
  })

  it('stays registered and serving after start, then drains on SIGTERM', async () => {
    const quick = blocks.find((b) => b.file === 'README.md' && b.kind === 'server') as Block
    const port = await freePort()
    const watcher = createWayfind({
      registry: consul({ url: consulServer.url, passingOnly: false }),
    })
    try {
      const child = startChild(join(OUT, fileName(quick)), [], {
        env: { CONSUL_URL: consulServer.url, PORT: String(port), HOST_IP: '127.0.0.1' },
        preload: ['tsx', FROM_SOURCE],
      })
      await child.waitFor(/orders is registered on port \d+/)
      expect(child.stdout()).toContain('payments: 1 instance(s)')

      // After the module finished evaluating: it answers through wayfind, reports itself
      // registered, and the registry still lists it.
      const res = await request(`http://127.0.0.1:${String(port)}/`, { method: 'POST', body: '{}' })
      expect(await res.body.text()).toBe('charged')
      const health = await request(`http://127.0.0.1:${String(port)}/health`)
      expect(health.statusCode).toBe(200)
      expect(await health.body.json()).toMatchObject({
        status: 'UP',
        registrations: [{ service: 'orders', state: 'registered' }],
      })
      const listed = await watcher.resolve('orders', { timeoutMs: 10_000 })
      expect(listed.map((i) => i.port)).toEqual([port])

      // SIGTERM: removed from the registry first, still serving (DOWN) meanwhile, then the
      // process ends by the signal.
      const removed = waitFor(
        watcher.events,
        'change',
        (e) => e.service === 'orders' && e.removed.length === 1,
        10_000,
      )
      child.proc.kill('SIGTERM')
      await removed
      const draining = await request(`http://127.0.0.1:${String(port)}/health`)
      expect(draining.statusCode).toBe(503)
      expect(await draining.body.json()).toMatchObject({ status: 'DOWN', draining: true })
      const exited = await withDeadline(child.exit, 19_000 + 5_000, 'the quick start to exit')
      expect({ code: exited.code, signal: exited.signal }).toEqual({
        code: null,
        signal: 'SIGTERM',
      })
      expect(child.stderr()).toBe('')
    } finally {
      await watcher.close()
    }
  })
})
