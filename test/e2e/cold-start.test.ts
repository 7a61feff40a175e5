/**
 * etcd's client stack (etcd3, @grpc/grpc-js, protobufjs, cockatiel) is loaded only by programs
 * that use etcd: importing wayfind, a memory-only or Consul-only program, and the CLI talking to
 * Consul must not load a single module of it.
 *
 * How the module cache is read: every program runs in its own `node` process with a preloaded
 * module (`--import data:...`) that, when the process exits, writes the keys of `require.cache`
 * to a file. These packages are all CommonJS, and Node loads CommonJS with its CommonJS loader
 * even when an ES module imports it, so any load of them (import or require) leaves their files in
 * that cache. The etcd cases prove it: the same check sees the stack when etcd is used.
 *
 * Runs the built package (dist/, as installed) when it exists, else the TypeScript source through
 * tsx, like the CLI tests.
 */
import { once } from 'node:events'
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startConsulServer, type ConsulTestServer } from '../support/consul-server/index.js'
import { EtcdServer } from '../support/etcd.js'
import { PROGRAMS, parseReport, runNode, type StartupProgram } from '../support/startup-programs.js'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const BUILT = existsSync(join(ROOT, 'dist/index.js'))
const ENTRY = pathToFileURL(join(ROOT, BUILT ? 'dist/index.js' : 'src/index.ts')).href
const CLI = join(ROOT, BUILT ? 'dist/cli/main.js' : 'src/cli/main.ts')
const LOADER = BUILT ? [] : ['--import', 'tsx']

/** Preloaded into every program: writes the CommonJS module cache's keys on exit. */
const RECORDER = `data:text/javascript,${encodeURIComponent(`
import { createRequire } from 'node:module'
import { writeFileSync } from 'node:fs'
const cache = createRequire(process.cwd() + '/').cache
process.on('exit', () => {
  writeFileSync(process.env.WAYFIND_MODULES_OUT, JSON.stringify(Object.keys(cache)))
})`)}`

/** The packages of etcd's stack, as they appear in module paths. */
const ETCD_STACK = ['etcd3', '@grpc/grpc-js', '@grpc/proto-loader', 'protobufjs', 'cockatiel']

/** Which of {@link ETCD_STACK} have at least one file in `modules`. */
function etcdStackIn(modules: readonly string[]): string[] {
  return ETCD_STACK.filter((pkg) =>
    modules.some((m) => m.replaceAll('\\', '/').includes(`/node_modules/${pkg}/`)),
  )
}

let tmp: string
let runs = 0

/** Runs `node <args>` with the recorder; returns its exit code, output and loaded modules. */
async function traced(
  args: readonly string[],
  env: Record<string, string>,
): Promise<{ code: number | null; stdout: string; stderr: string; modules: string[] }> {
  const out = join(tmp, `modules-${String(++runs)}.json`)
  const run = await runNode([...LOADER, '--import', RECORDER, ...args], {
    cwd: ROOT,
    env: { ...cleanEnv(), ...env, WAYFIND_ENTRY: ENTRY, WAYFIND_MODULES_OUT: out },
    timeoutMs: 30_000,
  })
  const modules = existsSync(out) ? (JSON.parse(readFileSync(out, 'utf8')) as string[]) : []
  return { code: run.code, stdout: run.stdout, stderr: run.stderr, modules }
}

function runProgram(p: StartupProgram, env: Record<string, string>) {
  return traced(['--input-type=module', '-e', p.source], env)
}

/** The environment without registry variables from the host, so that only the flags decide. */
function cleanEnv(): Record<string, string> {
  const env: Record<string, string> = {}
  for (const [k, v] of Object.entries(process.env))
    if (v !== undefined && !/^(CONSUL_|ETCDCTL_|NODE_OPTIONS$)/.test(k)) env[k] = v
  return env
}

describe("etcd's stack is loaded only when etcd is used", () => {
  let backend: Server
  let backendPort: number
  let consul: ConsulTestServer
  let etcd: EtcdServer

  beforeAll(async () => {
    tmp = mkdtempSync(join(tmpdir(), 'wayfind-cold-start-'))
    backend = createServer((_req, res) => {
      res.end('ok')
    })
    backend.listen(0, '127.0.0.1')
    await once(backend, 'listening')
    backendPort = (backend.address() as AddressInfo).port
    consul = await startConsulServer()
    consul.registerService({
      name: 'backend',
      id: 'b1',
      address: '127.0.0.1',
      port: backendPort,
      checks: [{ status: 'passing' }],
    })
    etcd = await EtcdServer.start()
    await etcd
      .client()
      .put('/services/backend/b1')
      .value(`127.0.0.1:${String(backendPort)}`)
  })

  afterAll(async () => {
    await etcd.remove()
    await consul.close()
    backend.close()
    rmSync(tmp, { recursive: true, force: true })
  })

  it('importing the package entry loads none of it', async () => {
    const run = await runProgram(PROGRAMS.importWayfind, {})
    expect(run.code, run.stderr).toBe(0)
    expect(run.modules.some((m) => m.includes('/node_modules/undici/'))).toBe(true)
    expect(etcdStackIn(run.modules)).toEqual([])
  })

  it('a memory-only program loads none of it, up to its first routed request', async () => {
    const run = await runProgram(PROGRAMS.memoryRequest, { BACKEND_PORT: String(backendPort) })
    expect(run.code, run.stderr).toBe(0)
    expect(parseReport(run.stdout)).toBeDefined()
    expect(etcdStackIn(run.modules)).toEqual([])
  })

  it('a Consul-only program loads none of it, up to its first routed request', async () => {
    const run = await runProgram(PROGRAMS.consulRequest, { CONSUL_URL: consul.url })
    expect(run.code, run.stderr).toBe(0)
    expect(parseReport(run.stdout)).toBeDefined()
    expect(etcdStackIn(run.modules)).toEqual([])
    // Consul is spoken over undici: the `consul` npm package (CommonJS too) is not wayfind's client.
    expect(
      run.modules.filter((m) => m.replaceAll('\\', '/').includes('/node_modules/consul/')),
    ).toEqual([])
  })

  it('an etcd program loads it (so the check above can see it)', async () => {
    const run = await runProgram(PROGRAMS.etcdRequest, { ETCD_HOSTS: etcd.host })
    expect(run.code, run.stderr).toBe(0)
    expect(parseReport(run.stdout)).toBeDefined()
    expect(etcdStackIn(run.modules)).toEqual(expect.arrayContaining(['etcd3', '@grpc/grpc-js']))
    expect(etcdStackIn(run.modules)).toContain('protobufjs')
  })

  it('`wayfind resolve --consul` and `--help` load none of it; `--etcd` does', async () => {
    const [help, onConsul, onEtcd] = await Promise.all([
      traced([CLI, '--help'], {}),
      traced([CLI, 'resolve', 'backend', '--consul', consul.url, '--json'], {}),
      traced([CLI, 'resolve', 'backend', '--etcd', etcd.host, '--json'], {}),
    ])
    expect(help.code, help.stderr).toBe(0)
    expect(etcdStackIn(help.modules)).toEqual([])
    expect(onConsul.code, onConsul.stderr).toBe(0)
    expect(JSON.parse(onConsul.stdout)).toMatchObject([{ id: 'b1', port: backendPort }])
    expect(etcdStackIn(onConsul.modules)).toEqual([])
    expect(onEtcd.code, onEtcd.stderr).toBe(0)
    expect(JSON.parse(onEtcd.stdout)).toMatchObject([{ id: 'b1', port: backendPort }])
    expect(etcdStackIn(onEtcd.modules)).toEqual(expect.arrayContaining(['etcd3', '@grpc/grpc-js']))
  })
})
