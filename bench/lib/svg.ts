/**
 * Self-contained SVG charts (no dependency): a latency CDF for distributions and horizontal bars
 * for single numbers. The files open in any browser.
 */

export interface CdfSeries {
  readonly label: string
  /** Samples in `unit`. */
  readonly samples: readonly number[]
}

export interface BarItem {
  readonly label: string
  readonly value: number
}

const PALETTE = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b']
const W = 760
const H = 440
const M = { left: 70, right: 20, top: 40, bottom: 70 }

function esc(text: string): string {
  return text
    .replace(/&/g, '&amp;')
    .replace(/</g, '&lt;')
    .replace(/>/g, '&gt;')
    .replace(/"/g, '&quot;')
}

/** "Nice" axis ticks (1, 2, 5 × 10^k) covering [0, max]. */
function ticks(max: number, count = 6): number[] {
  if (!(max > 0)) return [0, 1]
  const raw = max / count
  const pow = 10 ** Math.floor(Math.log10(raw))
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw) ?? raw
  const out: number[] = []
  for (let v = 0; v <= max + step * 0.001; v += step) out.push(Number(v.toPrecision(12)))
  if ((out[out.length - 1] ?? 0) < max)
    out.push(Number(((out[out.length - 1] ?? 0) + step).toPrecision(12)))
  return out
}

function fmt(v: number): string {
  return Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)
}

/**
 * A CDF chart: x = latency (clipped at the largest p99 × 1.5 so that one outlier does not squash
 * the curves; the clip is written on the chart), y = fraction of samples at or below.
 */
export function cdfSvg(title: string, unit: string, series: readonly CdfSeries[]): string {
  const sorted = series.map((s) => [...s.samples].sort((a, b) => a - b))
  const p99s = sorted.map((s) => s[Math.max(0, Math.ceil(0.99 * s.length) - 1)] ?? 0)
  const maxAll = Math.max(0, ...sorted.map((s) => s[s.length - 1] ?? 0))
  const clip = Math.min(maxAll, Math.max(...p99s, 0) * 1.5)
  const xt = ticks(clip > 0 ? clip : 1)
  const xMax = xt[xt.length - 1] ?? 1
  const pw = W - M.left - M.right
  const ph = H - M.top - M.bottom
  const x = (v: number): number => M.left + (Math.min(v, xMax) / xMax) * pw
  const y = (f: number): number => M.top + (1 - f) * ph
  const parts: string[] = []
  parts.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  )
  for (const t of xt) {
    parts.push(`<line x1="${x(t)}" y1="${M.top}" x2="${x(t)}" y2="${M.top + ph}" stroke="#eee"/>`)
    parts.push(
      `<text x="${x(t)}" y="${M.top + ph + 16}" text-anchor="middle" font-size="11">${fmt(t)}</text>`,
    )
  }
  for (const f of [0, 0.25, 0.5, 0.75, 0.9, 1]) {
    parts.push(`<line x1="${M.left}" y1="${y(f)}" x2="${M.left + pw}" y2="${y(f)}" stroke="#eee"/>`)
    parts.push(
      `<text x="${M.left - 6}" y="${y(f) + 4}" text-anchor="end" font-size="11">${f}</text>`,
    )
  }
  parts.push(
    `<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#888"/>`,
  )
  parts.push(
    `<text x="${M.left + pw / 2}" y="${M.top + ph + 34}" text-anchor="middle" font-size="12">${esc(unit)}${clip < maxAll ? ` (clipped at ${fmt(xMax)}; max ${fmt(maxAll)})` : ''}</text>`,
  )
  parts.push(
    `<text x="16" y="${M.top + ph / 2}" font-size="12" transform="rotate(-90 16 ${M.top + ph / 2})" text-anchor="middle">fraction ≤ x</text>`,
  )
  sorted.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length] ?? '#000'
    const n = s.length
    if (n === 0) return
    // A step function: at most ~400 points so that the file stays small for 10k samples.
    const stride = Math.max(1, Math.floor(n / 400))
    const pts: string[] = [`${x(s[0] ?? 0).toFixed(1)},${y(0).toFixed(1)}`]
    for (let k = 0; k < n; k += stride)
      pts.push(`${x(s[k] ?? 0).toFixed(1)},${y((k + 1) / n).toFixed(1)}`)
    pts.push(`${x(s[n - 1] ?? 0).toFixed(1)},${y(1).toFixed(1)}`)
    parts.push(
      `<polyline fill="none" stroke="${color}" stroke-width="2" points="${pts.join(' ')}"/>`,
    )
    const ly = H - 22 + Math.floor(i / 3) * 14 - (series.length > 3 ? 10 : 0)
    const lx = M.left + (i % 3) * 230
    parts.push(`<rect x="${lx}" y="${ly - 9}" width="14" height="4" fill="${color}"/>`)
    parts.push(
      `<text x="${lx + 20}" y="${ly - 3}" font-size="12">${esc(series[i]?.label ?? '')}</text>`,
    )
  })
  return wrap(parts)
}

/** Horizontal bars, one per item, with the value printed at the end. */
export function barsSvg(title: string, unit: string, items: readonly BarItem[]): string {
  const rowH = 28
  const h = M.top + items.length * rowH + 40
  const left = 230
  const pw = W - left - 90
  const max = Math.max(...items.map((i) => i.value), 0) || 1
  const parts: string[] = []
  parts.push(
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  )
  items.forEach((item, i) => {
    const yy = M.top + i * rowH
    const w = Math.max(1, (item.value / max) * pw)
    parts.push(
      `<text x="${left - 8}" y="${yy + 17}" text-anchor="end" font-size="12">${esc(item.label)}</text>`,
    )
    parts.push(
      `<rect x="${left}" y="${yy + 4}" width="${w.toFixed(1)}" height="${rowH - 10}" fill="${PALETTE[i % PALETTE.length] ?? '#000'}"/>`,
    )
    parts.push(
      `<text x="${left + w + 6}" y="${yy + 17}" font-size="12">${esc(fmt(item.value))} ${esc(unit)}</text>`,
    )
  })
  return wrap(parts, h)
}

function wrap(parts: readonly string[], height = H): string {
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`
}
