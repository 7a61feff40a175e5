/**
 * Small whole programs, each run as its own `node` process, shared by the cold-start test (which
 * modules a program loads) and bench/startup.ts (how long it takes and how much memory it uses).
 *
 * Each program is ES module source for `node --input-type=module -e`. It reads what it needs from
 * the environment (`WAYFIND_ENTRY`: URL of the wayfind entry to import, dist/index.js or, under
 * tsx, src/index.ts; `BACKEND_PORT`: an HTTP server answering 200 on loopback; `CONSUL_URL`;
 * `ETCD_HOSTS`), does its job, prints one {@link MARKER} line with its own timings and memory,
 * and exits. Any failure exits non-zero with the error on stderr.
 */
import { spawn } from 'node:child_process'

/** Prefix of the one line a program prints when its job is done. */
export const MARKER = 'WAYFIND_STARTUP '

/** What a program reports on its marker line. */
export interface ProgramReport {
  /** `performance.now()` at the marker: ms since the process started (Node's time origin). */
  readonly markMs: number
  /** Resident set size at the marker, bytes. */
  readonly rssBytes: number
  /** Peak resident set size of the process so far, bytes (`process.resourceUsage().maxRSS`). */
  readonly maxRssBytes: number
  /**
   * CPU time of the process so far (user + system, every thread), ms. Unlike wall time it barely
   * moves when other processes compete for the cores.
   */
  readonly cpuMs: number
}

export interface StartupProgram {
  readonly name: string
  /** Environment variables the program needs (besides `WAYFIND_ENTRY`). */
  readonly needs: readonly ('BACKEND_PORT' | 'CONSUL_URL' | 'ETCD_HOSTS')[]
  readonly source: string
}

// Printed, then exit at once: whatever the process does after its job (closing sockets) is not
// the start-up being measured.
const REPORT = `() => {
  const usage = process.resourceUsage()
  return '${MARKER}' + JSON.stringify({
    markMs: performance.now(),
    rssBytes: process.memoryUsage.rss(),
    maxRssBytes: usage.maxRSS * 1024,
    cpuMs: (usage.userCPUTime + usage.systemCPUTime) / 1000,
  }) + '\\n'
}`

const MARK = `
const report = ${REPORT}
const mark = () => {
  process.stdout.write(report())
  process.exit(0)
}
const env = (name) => {
  const v = process.env[name]
  if (v === undefined || v === '') throw new Error('missing environment variable ' + name)
  return v
}
`

// One routed request through wayfind's dispatcher to the service "backend".
const ROUTED_REQUEST = `
const res = await wf.dispatcher.request({ origin: 'http://backend', path: '/', method: 'GET' })
await res.body.text()
if (res.statusCode !== 200) throw new Error('backend answered ' + res.statusCode)
`

function program(name: string, needs: StartupProgram['needs'], body: string): StartupProgram {
  return { name, needs, source: `${MARK}\n${body}\nmark()\n` }
}

export const PROGRAMS = {
  /** Nothing at all: the cost of starting node itself, the floor of every other program. */
  nothing: program('bare node', [], ''),
  /** `await import('wayfind')`, nothing else. */
  importWayfind: program('import wayfind', [], `await import(env('WAYFIND_ENTRY'))`),
  /** The reference: `await import('undici')`, nothing else. */
  importUndici: program('import undici', [], `await import('undici')`),
  /** `createWayfind()` with its defaults, then idle: the memory a client costs at rest. */
  createWayfind: program(
    'createWayfind()',
    [],
    `const { createWayfind } = await import(env('WAYFIND_ENTRY'))
const wf = createWayfind()
if (wf.closed) throw new Error('closed')`,
  ),
  /** The embedded registry: one instance of "backend", one request routed to it. */
  memoryRequest: program(
    'memory registry → first request',
    ['BACKEND_PORT'],
    `const { createWayfind, memoryRegistry } = await import(env('WAYFIND_ENTRY'))
const registry = memoryRegistry()
registry.put('backend', { id: 'b1', host: '127.0.0.1', port: Number(env('BACKEND_PORT')) })
const wf = createWayfind({ registry })
${ROUTED_REQUEST}`,
  ),
  /** Consul: the first request routed to "backend" (the watch's first answer, then the call). */
  consulRequest: program(
    'Consul → first request',
    ['CONSUL_URL'],
    `const { createWayfind, consul } = await import(env('WAYFIND_ENTRY'))
const wf = createWayfind({ registry: consul({ url: env('CONSUL_URL') }) })
${ROUTED_REQUEST}`,
  ),
  /** etcd: the first request routed to "backend". */
  etcdRequest: program(
    'etcd → first request',
    ['ETCD_HOSTS'],
    `const { createWayfind, etcd } = await import(env('WAYFIND_ENTRY'))
const wf = createWayfind({ registry: etcd({ hosts: env('ETCD_HOSTS').split(',') }) })
${ROUTED_REQUEST}`,
  ),
  /** The floor of the memory program: undici alone, one request to the backend's address. */
  undiciRequest: program(
    'undici → first request',
    ['BACKEND_PORT'],
    `const { request } = await import('undici')
const res = await request('http://127.0.0.1:' + env('BACKEND_PORT') + '/')
await res.body.text()
if (res.statusCode !== 200) throw new Error('backend answered ' + res.statusCode)`,
  ),
  /**
   * The floor of the Consul program: a hand-written lookup with undici (one health query, the
   * first passing entry), then the request.
   */
  undiciConsulRequest: program(
    'undici + one Consul query → first request',
    ['CONSUL_URL'],
    `const { request } = await import('undici')
const q = await request(env('CONSUL_URL') + '/v1/health/service/backend?passing=1')
const entries = await q.body.json()
const first = entries[0]
if (first === undefined) throw new Error('backend is not registered')
const host = first.Service.Address || first.Node.Address
const res = await request('http://' + host + ':' + first.Service.Port + '/')
await res.body.text()
if (res.statusCode !== 200) throw new Error('backend answered ' + res.statusCode)`,
  ),
} as const satisfies Record<string, StartupProgram>

/**
 * A module to preload (`node --import <this> ...`) into a program that prints no marker itself
 * (the CLI): the figures are taken when the program first writes to stdout (its answer), and
 * the marker line is printed after it, when the process exits.
 */
export const MARK_ON_OUTPUT = `data:text/javascript,${encodeURIComponent(`
import { writeSync } from 'node:fs'
const report = ${REPORT}
let line
const write = process.stdout.write
process.stdout.write = function (...args) {
  line ??= report()
  return write.apply(this, args)
}
process.on('exit', () => { writeSync(1, line ?? report()) })
`)}`

/** Parses the marker line out of a program's stdout; undefined when it never printed one. */
export function parseReport(stdout: string): ProgramReport | undefined {
  const line = stdout.split('\n').find((l) => l.startsWith(MARKER))
  if (line === undefined) return undefined
  return JSON.parse(line.slice(MARKER.length)) as ProgramReport
}

/** One finished `node` process. */
export interface NodeRun {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /**
   * From spawn() to the first output on stdout (NaN without any), ms: a program's marker line,
   * the CLI's answer.
   */
  readonly toOutputMs: number
  /** From spawn() to the process's exit, ms. */
  readonly toExitMs: number
}

/**
 * Runs `node <args>` to its end and collects its output. Kills it (SIGKILL) and rejects after
 * `timeoutMs`: a program that hangs fails its caller, it never hangs it.
 */
export function runNode(
  args: readonly string[],
  options: { readonly env: NodeJS.ProcessEnv; readonly cwd: string; readonly timeoutMs: number },
): Promise<NodeRun> {
  return new Promise<NodeRun>((resolve, reject) => {
    const started = performance.now()
    let toOutputMs = Number.NaN
    let stdout = ''
    let stderr = ''
    const child = spawn(process.execPath, [...args], {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(
        new Error(
          `node ${args.join(' ').slice(0, 200)} did not finish within ${options.timeoutMs} ms (stderr: ${stderr.slice(-2_000)})`,
        ),
      )
    }, options.timeoutMs)
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk
      if (Number.isNaN(toOutputMs)) toOutputMs = performance.now() - started
    })
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => {
      stderr += chunk
    })
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    // 'close', not 'exit': both pipes are drained, so the marker line has been seen.
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr, toOutputMs, toExitMs: performance.now() - started })
    })
  })
}
