/**
 * The wayfind demo: call a service by name, on the embedded in-memory registry.
 *
 *   npm run demo
 *
 * 1. starts three HTTP instances of a "greeter" service on free loopback ports and registers them;
 * 2. calls http://greeter/hello by name under round-robin and prints the distribution;
 * 3. makes one instance slow and shows least-loaded steering traffic away from it;
 * 4. deregisters an instance live: prints the change event while calls keep succeeding.
 *
 * Set WAYFIND_DEMO_QUIET=1 to print only the summary line (used by the tests).
 */
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { fetch } from 'undici'
import {
  createWayfind,
  memoryRegistry,
  type RegistrationHandle,
  type Wayfind,
} from '../src/index.js'

const quiet = process.env.WAYFIND_DEMO_QUIET === '1'
const t0 = performance.now()
const say = (line = ''): void => {
  if (!quiet)
    process.stdout.write(
      `${process.env.DEMO_TIMING === '1' ? `[${Math.round(performance.now() - t0)}ms] ` : ''}${line}\n`,
    )
}

interface Greeter {
  readonly name: string
  readonly server: Server
  readonly port: number
  delayMs: number
}

async function startGreeter(name: string): Promise<Greeter> {
  const g: Greeter = { name, server: createServer(), port: 0, delayMs: 0 }
  g.server.on('request', (req, res) => {
    const reply = (): void => {
      res.writeHead(200, { 'content-type': 'application/json' })
      res.end(JSON.stringify({ from: name, host: req.headers.host }))
    }
    if (g.delayMs > 0) setTimeout(reply, g.delayMs)
    else reply()
  })
  await new Promise<void>((resolve) => g.server.listen(0, '127.0.0.1', resolve))
  return Object.assign(g, { port: (g.server.address() as AddressInfo).port })
}

/** Calls the service `count` times with `concurrency` callers; returns replies per instance. */
async function callMany(
  wf: Wayfind,
  count: number,
  concurrency: number,
): Promise<{ by: Map<string, number>; failed: number }> {
  const by = new Map<string, number>()
  let failed = 0
  let next = 0
  const worker = async (): Promise<void> => {
    while (next < count) {
      next++
      try {
        const res = await fetch('http://greeter/hello', { dispatcher: wf.dispatcher })
        const body = (await res.json()) as { from: string; host: string }
        if (res.status !== 200 || body.host !== 'greeter')
          throw new Error(`unexpected reply ${res.status}`)
        by.set(body.from, (by.get(body.from) ?? 0) + 1)
      } catch {
        failed++
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  return { by, failed }
}

function table(
  title: string,
  names: readonly string[],
  by: Map<string, number>,
  total: number,
): void {
  say(title)
  for (const n of names) {
    const c = by.get(n) ?? 0
    say(`  ${n.padEnd(10)} ${String(c).padStart(5)}  ${'#'.repeat(Math.round((c / total) * 40))}`)
  }
}

async function main(): Promise<void> {
  const registry = memoryRegistry()
  const greeters = await Promise.all(['greeter-a', 'greeter-b', 'greeter-c'].map(startGreeter))
  const names = greeters.map((g) => g.name)

  // The "services" register themselves (one client plays all three here).
  const host = createWayfind({ registry })
  const regs = new Map<string, RegistrationHandle>()
  for (const g of greeters)
    regs.set(
      g.name,
      await host.register({
        name: 'greeter',
        id: g.name,
        address: '127.0.0.1',
        port: g.port,
        check: { ttlMs: 5_000 },
      }),
    )
  say(
    `Registered 3 instances of "greeter": ${greeters.map((g) => `${g.name}@127.0.0.1:${g.port}`).join(', ')}`,
  )

  // 1. Round-robin: exactly even.
  const rr = createWayfind({ registry: registry.client(), strategy: 'round-robin' })
  const resolved = await rr.resolve('greeter', { timeoutMs: 5_000 })
  say(`resolve('greeter') → ${resolved.length} instances`)
  const rrRun = await callMany(rr, 300, 4)
  say()
  table('Round-robin, 300 calls to http://greeter/hello:', names, rrRun.by, 300)

  // 2. Least-loaded with greeter-c slow: traffic moves to the fast ones.
  const slow = greeters[2] as Greeter
  slow.delayMs = 40
  const ll = createWayfind({ registry: registry.client(), strategy: 'least-loaded' })
  await ll.resolve('greeter')
  const llRun = await callMany(ll, 300, 8)
  say()
  table(
    `Least-loaded, 300 calls, 8 at a time, ${slow.name} answering in ${slow.delayMs} ms:`,
    names,
    llRun.by,
    300,
  )
  slow.delayMs = 0

  // 3. Remove greeter-b live while calls keep flowing.
  say()
  let changeSeen = false as boolean
  ll.events.on('change', (e) => {
    changeSeen = true
    say(
      `change event: service=${e.service} removed=[${e.removed.map((i) => i.id).join(', ')}] now=[${e.instances.map((i) => i.id).join(', ')}]`,
    )
  })
  const traffic = callMany(ll, 400, 4)
  await new Promise<void>((resolve) => setTimeout(resolve, 20))
  await regs.get('greeter-b')?.deregister()
  const live = await traffic
  table('Live removal of greeter-b, 400 calls, 4 at a time:', names, live.by, 400)
  const after = await callMany(ll, 60, 2)
  say(
    `After removal: ${after.by.get('greeter-b') ?? 0} calls reached greeter-b, ${after.failed} failed`,
  )

  const failed = rrRun.failed + llRun.failed + live.failed + after.failed
  const evenRr = names.every((n) => rrRun.by.get(n) === 100)
  // Callers first, then the instances' registrations (closing deregisters them).
  await Promise.all([rr.close(), ll.close()])
  await host.close()
  await Promise.all(greeters.map((g) => new Promise((resolve) => g.server.close(resolve))))
  const summary = {
    failed,
    roundRobinEven: evenRr,
    leastLoadedSlowShare: (llRun.by.get(slow.name) ?? 0) / 300,
    changeSeen,
    removedGotTraffic: after.by.get('greeter-b') ?? 0,
  }
  process.stdout.write(`${quiet ? '' : '\n'}demo summary ${JSON.stringify(summary)}\n`)
  if (failed > 0 || !changeSeen || summary.removedGotTraffic > 0) process.exitCode = 1
}

main().catch((err: unknown) => {
  process.stderr.write(
    `demo failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
  )
  process.exitCode = 1
})
