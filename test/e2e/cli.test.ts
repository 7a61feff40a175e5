/**
 * The `wayfind` binary, run as a real process (`node dist/cli/main.js`, built by the test
 * script; the TypeScript source through tsx when dist is missing) against the Consul test server
 * and a real etcd: watch shows additions and removals, resolve times out with exit code 3, and
 * `bench latency` leaves nothing registered behind, also when interrupted with SIGINT.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startConsulServer, type ConsulTestServer } from '../support/consul-server/index.js'
import { EtcdServer } from '../support/etcd.js'
import { withDeadline } from '../support/wait.js'

const DIST = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url))
// The binary users run: `npm test` builds it first (pretest). A missing build is a clear failure,
// not a silent fall-back to the sources.
if (!existsSync(DIST)) throw new Error(`${DIST} is missing: run "npm run build" first`)
const CLI = [DIST]

interface Run {
  readonly proc: ChildProcess
  stdout(): string
  stderr(): string
  /** Waits until stdout (or stderr) matches. */
  waitFor(pattern: RegExp, stream?: 'stdout' | 'stderr', timeoutMs?: number): Promise<void>
  readonly exit: Promise<number | null>
}

/** Environment without registry variables from the host, so that only the flags decide. */
function cleanEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [k, v] of Object.entries(process.env)) if (!/^(CONSUL_|ETCDCTL_)/.test(k)) env[k] = v
  return { ...env, ...extra }
}

function cli(args: readonly string[], env: NodeJS.ProcessEnv = cleanEnv()): Run {
  const proc = spawn(process.execPath, [...CLI, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env,
  })
  const out = { stdout: '', stderr: '' }
  const waiters: { pattern: RegExp; stream: 'stdout' | 'stderr'; resolve: () => void }[] = []
  const feed = (stream: 'stdout' | 'stderr') => (chunk: string) => {
    out[stream] += chunk
    for (const w of [...waiters])
      if (w.stream === stream && w.pattern.test(out[stream])) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve()
      }
  }
  proc.stdout.setEncoding('utf8').on('data', feed('stdout'))
  proc.stderr.setEncoding('utf8').on('data', feed('stderr'))
  const exit = once(proc, 'exit').then(([code]) => code as number | null)
  return {
    proc,
    stdout: () => out.stdout,
    stderr: () => out.stderr,
    exit,
    waitFor(pattern, stream = 'stdout', timeoutMs = 20_000) {
      if (pattern.test(out[stream])) return Promise.resolve()
      return withDeadline(
        new Promise<void>((resolve) => waiters.push({ pattern, stream, resolve })),
        timeoutMs,
        `${stream} to match ${String(pattern)} (stdout: ${JSON.stringify(out.stdout)}, stderr: ${JSON.stringify(out.stderr)})`,
      )
    },
  }
}

async function finished(run: Run, timeoutMs = 30_000): Promise<number | null> {
  return withDeadline(
    run.exit,
    timeoutMs,
    `the CLI to exit (stdout: ${run.stdout()}, stderr: ${run.stderr()})`,
  )
}

function jsonLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>)
}

describe('wayfind CLI: usage', () => {
  it('prints help for every command with exit code 0', async () => {
    const commands = [
      ['--help'],
      ['watch', '--help'],
      ['resolve', '--help'],
      ['bench', 'latency', '--help'],
    ]
    // In parallel: each is a process start, and they are independent.
    const runs = commands.map((args) => cli(args))
    for (const run of runs) {
      expect(await finished(run)).toBe(0)
      expect(run.stdout()).toMatch(/^Usage: wayfind/)
      expect(run.stdout()).toContain('Exit codes')
    }
  })

  it('rejects bad flags, missing arguments and a missing registry with exit code 2 and the usage', async () => {
    const cases: [string[], RegExp][] = [
      [['resolve', 'svc', '--consul', 'http://127.0.0.1:1', '--bogus'], /unknown option --bogus/],
      [
        ['resolve', 'svc', '--consul', 'http://127.0.0.1:1', '--timeout'],
        /--timeout needs a value/,
      ],
      [['resolve', 'svc', '--consul', 'http://127.0.0.1:1', '--json=yes'], /--json takes no value/],
      [
        ['resolve', 'svc', '--consul', 'http://127.0.0.1:1', '--timeout', '5'],
        /--timeout: "5" has no unit; write 5s for seconds or 5ms for milliseconds/,
      ],
      [
        ['bench', 'latency', '--etcd', '127.0.0.1:2', '--interval', '200'],
        /--interval: "200" has no unit/,
      ],
      [[], /Commands:/],
      [['bench'], /bench needs a benchmark name/],
      [['resolve', '--consul', 'http://127.0.0.1:1'], /missing <service>/],
      [['resolve', 'svc'], /no registry/],
      [
        ['resolve', 'svc', '--consul', 'http://127.0.0.1:1', '--etcd', '127.0.0.1:2'],
        /either --consul or --etcd/,
      ],
      [
        ['resolve', 'svc', '--consul', 'http://127.0.0.1:1', '--timeout', 'soon'],
        /--timeout: expected a duration/,
      ],
      [
        ['bench', 'latency', '--etcd', '127.0.0.1:2', '--count', '0'],
        /--count: expected a whole number/,
      ],
      [['frobnicate'], /unknown command "frobnicate"/],
    ]
    const runs = cases.map(([args]) => cli(args))
    for (const [i, [args, message]] of cases.entries()) {
      const run = runs[i]!
      expect(await finished(run), args.join(' ')).toBe(2)
      expect(run.stderr()).toMatch(message)
      expect(run.stderr()).toContain('Usage: wayfind')
      // In the CLI's words on stderr only: nothing on stdout, no raw parseArgs text.
      expect(run.stdout(), args.join(' ')).toBe('')
      expect(run.stderr()).not.toMatch(/ERR_PARSE_ARGS|To specify a positional|TypeError/)
    }
  })
})

describe('wayfind CLI against the Consul test server', () => {
  let consul: ConsulTestServer
  beforeAll(async () => {
    consul = await startConsulServer()
  })
  afterAll(async () => {
    await consul.close()
  })

  it('watch --json prints one line per change: an addition, then a removal', async () => {
    const run = cli(['watch', 'payments', '--consul', consul.url, '--json'])
    try {
      await consul.waitForBlockingQueries(1, 15_000)
      consul.registerService({
        name: 'payments',
        id: 'p1',
        address: '127.0.0.1',
        port: 8080,
        checks: [{ status: 'passing' }],
      })
      await run.waitFor(/"added":\[\{"id":"p1"/)
      consul.removeService('node-1', 'p1')
      await run.waitFor(/"removed":\[\{"id":"p1"/)
      const lines = jsonLines(run.stdout())
      expect(lines).toHaveLength(2)
      expect(lines[0]).toMatchObject({
        service: 'payments',
        removed: [],
        instances: [{ id: 'p1', host: '127.0.0.1', port: 8080, status: 'passing' }],
      })
      expect(lines[1]).toMatchObject({ service: 'payments', added: [], instances: [] })
      expect(Number.isNaN(Date.parse(String(lines[1]?.time)))).toBe(false)
    } finally {
      run.proc.kill('SIGINT')
    }
    expect(await finished(run)).toBe(0)
  })

  it('resolve times out with exit code 3 when the service has no instance', async () => {
    const run = cli(['resolve', 'nobody-home', '--consul', consul.url, '--timeout', '300ms'])
    expect(await finished(run)).toBe(3)
    expect(run.stderr()).toContain('no instance of "nobody-home"')
    expect(run.stdout()).toBe('')
  })

  it('resolve reads CONSUL_HTTP_ADDR and prints the instances as JSON', async () => {
    consul.registerService({
      name: 'orders',
      id: 'o1',
      address: '127.0.0.2',
      port: 9001,
      tags: ['v1'],
      checks: [{ status: 'passing' }],
    })
    const run = cli(['resolve', 'orders', '--json'], cleanEnv({ CONSUL_HTTP_ADDR: consul.url }))
    expect(await finished(run)).toBe(0)
    expect(JSON.parse(run.stdout())).toEqual([
      {
        id: 'o1',
        service: 'orders',
        host: '127.0.0.2',
        port: 9001,
        status: 'passing',
        weight: 1,
        tags: ['v1'],
        meta: {},
      },
    ])
  })

  it('bench latency measures every change and deregisters its instance', async () => {
    const run = cli([
      'bench',
      'latency',
      '--consul',
      consul.url,
      '--count',
      '3',
      '--interval',
      '10ms',
      '--service',
      'bench-consul',
      '--json',
    ])
    expect(await finished(run, 60_000)).toBe(0)
    const result = JSON.parse(run.stdout()) as {
      changes: number
      latencyMs: { count: number; p50: number; max: number }
    }
    expect(result.changes).toBe(3)
    expect(result.latencyMs.count).toBe(3)
    expect(result.latencyMs.p50).toBeGreaterThan(0)
    expect(result.latencyMs.max).toBeGreaterThanOrEqual(result.latencyMs.p50)
    await expectNothingRegisteredInConsul(consul, 'bench-consul')
  })

  it('bench latency with its default interval measures Consul, not the churn guard', async () => {
    // Each flip makes several early blocking-query answers (register, check passing); a paced
    // watcher ran out of tokens after a few flips and reported ~2 s per registration (the
    // guard's refill) instead of the registry's latency.
    const run = cli([
      'bench',
      'latency',
      '--consul',
      consul.url,
      '--count',
      '12',
      '--service',
      'bench-default',
      '--json',
    ])
    expect(await finished(run, 60_000)).toBe(0)
    const result = JSON.parse(run.stdout()) as {
      latencyMs: { count: number }
      registerLatencyMs: { p50: number }
    }
    expect(result.latencyMs.count).toBe(12)
    // Paced, register → added sat at the guard's 2 s refill (p50 1,886 ms here); unpaced it is
    // the server's answer time. 1 s sits far from both.
    expect(result.registerLatencyMs.p50).toBeLessThan(1_000)
    await expectNothingRegisteredInConsul(consul, 'bench-default')
  })

  it('bench latency interrupted by SIGINT cleans up and exits 130', async () => {
    const run = cli([
      'bench',
      'latency',
      '--consul',
      consul.url,
      '--count',
      '1000',
      '--interval',
      '10ms',
      '--service',
      'bench-consul-int',
    ])
    await run.waitFor(/progress \d+\/1000/, 'stderr', 30_000)
    run.proc.kill('SIGINT')
    expect(await finished(run)).toBe(130)
    expect(run.stderr()).toContain('interrupted after')
    await expectNothingRegisteredInConsul(consul, 'bench-consul-int')
  })
})

async function expectNothingRegisteredInConsul(
  consul: ConsulTestServer,
  service: string,
): Promise<void> {
  const agent = (await (await fetch(`${consul.url}/v1/agent/services`)).json()) as Record<
    string,
    { Service: string }
  >
  expect(Object.values(agent).filter((s) => s.Service === service)).toEqual([])
  const catalog = (await (
    await fetch(`${consul.url}/v1/catalog/service/${service}`)
  ).json()) as unknown[]
  expect(catalog).toEqual([])
}

describe('wayfind CLI against etcd', () => {
  let server: EtcdServer
  let admin: Etcd3
  beforeAll(async () => {
    server = await EtcdServer.start()
    admin = server.client()
  })
  afterAll(async () => {
    await server.remove()
  })

  const value = (id: string, port: number): string =>
    JSON.stringify({
      id,
      name: 'catalog',
      address: '127.0.0.1',
      port,
      tags: [],
      meta: {},
      weight: 2,
    })

  it('watch (not a TTY) appends each addition and removal', async () => {
    const run = cli(['watch', 'catalog', '--etcd', server.host])
    try {
      await run.waitFor(/watching catalog on etcd/)
      await admin.put('/services/catalog/c1').value(value('c1', 7001))
      await run.waitFor(/\+ c1 {2}127\.0\.0\.1:7001 {2}passing {2}w=2/)
      await admin.put('/services/catalog/c2').value(value('c2', 7002))
      await run.waitFor(/\+ c2 {2}127\.0\.0\.1:7002/)
      await admin.delete().key('/services/catalog/c1')
      await run.waitFor(/- c1 {2}127\.0\.0\.1:7001/)
      expect(run.stdout()).toMatch(/catalog: 1 instance\(s\) \(\+0 -1 ~0\)/)
    } finally {
      run.proc.kill('SIGINT')
    }
    expect(await finished(run)).toBe(0)
  })

  it('resolve times out with exit code 3 and reads ETCDCTL_ENDPOINTS', async () => {
    const run = cli(
      ['resolve', 'ghost', '--timeout', '300ms'],
      cleanEnv({ ETCDCTL_ENDPOINTS: `http://${server.host}` }),
    )
    expect(await finished(run)).toBe(3)
    expect(run.stderr()).toContain('no instance of "ghost"')
  })

  it('bench latency interrupted by SIGINT revokes its lease: no key is left', async () => {
    const run = cli([
      'bench',
      'latency',
      '--etcd',
      server.host,
      '--count',
      '1000',
      '--interval',
      '10ms',
      '--service',
      'bench-etcd',
    ])
    await run.waitFor(/progress \d+\/1000/, 'stderr', 30_000)
    run.proc.kill('SIGINT')
    expect(await finished(run)).toBe(130)
    expect(await admin.getAll().prefix('/services/bench-etcd/').keys()).toEqual([])
    expect(run.stdout()).toMatch(/change → event latency on etcd/)
  })

  it('bench latency completes and leaves no key behind', async () => {
    const run = cli([
      'bench',
      'latency',
      '--etcd',
      server.host,
      '--count',
      '4',
      '--interval',
      '10ms',
      '--service',
      'bench-etcd-2',
      '--json',
    ])
    expect(await finished(run, 60_000)).toBe(0)
    const result = JSON.parse(run.stdout()) as {
      changes: number
      registerLatencyMs: { count: number }
      deregisterLatencyMs: { count: number }
    }
    expect(result.changes).toBe(4)
    expect(result.registerLatencyMs.count + result.deregisterLatencyMs.count).toBe(4)
    expect(await admin.getAll().prefix('/services/bench-etcd-2/').keys()).toEqual([])
  })
})
