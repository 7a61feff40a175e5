/**
 * The long chaos run and replays: `npm run chaos -- [--registry etcd|consul|both] [--seed N]
 * [--ops M] [--runs K] [--json]`. Without `--seed` a random seed is drawn and printed; every
 * failure prints its seed and the command that replays it. Exit code 1 when any run failed.
 */
import { parseArgs } from 'node:util'
import { consulTarget } from './consul-target.js'
import { formatReport, replayCommand, runChaos, type ChaosReport } from './driver.js'
import { etcdTarget } from './etcd-target.js'

const USAGE =
  'usage: npm run chaos -- [--registry etcd|consul|both] [--seed N] [--ops M] [--runs K] [--json]\n'

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      registry: { type: 'string', default: 'both' },
      seed: { type: 'string' },
      ops: { type: 'string', default: '2000' },
      runs: { type: 'string', default: '1' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: false,
  })
  if (values.help === true) {
    process.stdout.write(USAGE)
    return 0
  }
  const integer = (name: string, raw: string, min: number): number => {
    const n = Number(raw)
    if (!Number.isSafeInteger(n) || n < min)
      throw new Error(`--${name} must be an integer ≥ ${min}, got ${raw}\n${USAGE}`)
    return n
  }
  const registries =
    values.registry === 'both' ? (['etcd', 'consul'] as const) : ([values.registry] as const)
  for (const r of registries)
    if (r !== 'etcd' && r !== 'consul') throw new Error(`unknown --registry ${r}\n${USAGE}`)
  const ops = integer('ops', values.ops, 1)
  const runs = integer('runs', values.runs, 1)
  const first =
    values.seed === undefined
      ? Math.floor(Math.random() * 2 ** 31)
      : integer('seed', values.seed, 0)

  const reports: ChaosReport[] = []
  for (let k = 0; k < runs; k++) {
    const seed = first + k
    for (const registry of registries) {
      process.stdout.write(`chaos ${registry} seed=${seed} ops=${ops}: running...\n`)
      const target = registry === 'etcd' ? await etcdTarget() : await consulTarget()
      const report = await runChaos(target, { seed, ops })
      reports.push(report)
      process.stdout.write(formatReport(report))
    }
  }
  if (values.json) process.stdout.write(`${JSON.stringify(reports, null, 2)}\n`)
  const failed = reports.filter((r) => !r.ok)
  if (failed.length > 0) {
    process.stdout.write(`\n${failed.length} of ${reports.length} runs FAILED; replay with:\n`)
    for (const r of failed) process.stdout.write(`  ${replayCommand(r)}\n`)
    return 1
  }
  process.stdout.write(`\nall ${reports.length} runs converged with nothing lost\n`)
  return 0
}

main().then(
  (code) => {
    process.exit(code)
  },
  (err: unknown) => {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`)
    process.exit(2)
  },
)
