// Live candlestick chart built from trades (lightweight-charts, served from
// node_modules as /vendor/lightweight-charts.js, global `LightweightCharts`).
//
// Candles are bucketed by the chosen interval in the browser's local time
// (the library draws UTC, so times are shifted by the local offset).

import { decimalsOf } from "./decimal.js";

const LC = window.LightweightCharts;
const TZ_SHIFT = -new Date().getTimezoneOffset() * 60;

/** Parse the contract's ISO 8601 timestamp ("...T17:51:32.123456Z") to epoch ms. */
export function parseTime(iso) {
  const m = /^(\d{4})-(\d\d)-(\d\d)T(\d\d):(\d\d):(\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?$/.exec(iso || "");
  if (!m) return Date.parse(iso);
  const ms = m[7] ? Number((m[7] + "00").slice(0, 3)) : 0;
  let t = Date.UTC(+m[1], +m[2] - 1, +m[3], +m[4], +m[5], +m[6], ms);
  if (m[8] && m[8] !== "Z") {
    const sign = m[8][0] === "-" ? -1 : 1;
    const digits = m[8].slice(1).replace(":", "");
    t -= sign * (Number(digits.slice(0, 2)) * 60 + Number(digits.slice(2))) * 60000;
  }
  return t;
}

export class PriceChart {
  constructor(container, colors) {
    this.interval = 5;
    this.bars = [];
    this.dirtyFrom = null; // first candle changed since the last flush()
    this.needsReset = false;
    this.ready = Boolean(LC);
    if (!this.ready) {
      container.textContent = "chart library not loaded";
      return;
    }
    this.chart = LC.createChart(container, {
      autoSize: true,
      layout: {
        background: { type: "solid", color: colors.panel },
        textColor: colors.muted,
        fontSize: 11,
        fontFamily: "ui-monospace, 'DejaVu Sans Mono', monospace",
        attributionLogo: true,
      },
      grid: { vertLines: { color: colors.grid }, horzLines: { color: colors.grid } },
      rightPriceScale: { borderColor: colors.line, scaleMargins: { top: 0.1, bottom: 0.25 } },
      timeScale: { borderColor: colors.line, timeVisible: true, secondsVisible: true, rightOffset: 4, barSpacing: 8 },
      crosshair: { mode: LC.CrosshairMode ? LC.CrosshairMode.Normal : 0 },
    });
    this.candles = this.chart.addSeries(LC.CandlestickSeries, {
      upColor: colors.up,
      downColor: colors.down,
      borderUpColor: colors.up,
      borderDownColor: colors.down,
      wickUpColor: colors.up,
      wickDownColor: colors.down,
    });
    this.volume = this.chart.addSeries(LC.HistogramSeries, {
      priceScaleId: "volume",
      priceFormat: { type: "volume" },
      lastValueVisible: false,
      priceLineVisible: false,
    });
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    this.colors = colors;
  }

  /** Set the price grid of the current symbol (precision follows tick_size). */
  setSpec(spec) {
    if (!this.ready) return;
    const tick = Number(spec.tick_size);
    this.candles.applyOptions({ priceFormat: { type: "price", precision: decimalsOf(spec.tick_size), minMove: tick } });
  }

  setInterval(seconds, trades) {
    this.interval = seconds;
    this.setTrades(trades);
  }

  bucket(ms) {
    const s = Math.floor(ms / 1000) + TZ_SHIFT;
    return s - (((s % this.interval) + this.interval) % this.interval);
  }

  /** Rebuild every candle from `trades` (oldest first). */
  setTrades(trades) {
    this.bars = [];
    this.dirtyFrom = null;
    this.needsReset = false;
    for (const t of trades) this.addToBars(t);
    if (!this.ready) return;
    this.candles.setData(this.bars.map((b) => ({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close })));
    this.volume.setData(this.bars.map((b) => this.volumePoint(b)));
    if (this.bars.length) this.chart.timeScale().scrollToRealTime();
  }

  /**
   * Add one live trade. Cheap: only the candle data changes here; the chart is
   * redrawn by flush(), once per animation frame however many trades arrived.
   */
  addTrade(trade) {
    const last = this.bars[this.bars.length - 1];
    const time = this.bucket(parseTime(trade.timestamp));
    if (last && time < last.time) {
      this.needsReset = true; // out of order: rebuild from the page's trade list
      return;
    }
    this.addToBars(trade);
    const changed = this.bars.length - 1; // the trade's candle, always the last one
    this.dirtyFrom = this.dirtyFrom === null ? changed : Math.min(this.dirtyFrom, changed);
  }

  /** Push pending candle changes to the chart; `trades` is used when a rebuild is needed. */
  flush(trades) {
    if (this.needsReset) {
      this.needsReset = false;
      this.dirtyFrom = null;
      this.setTrades(trades);
      return;
    }
    if (this.dirtyFrom === null || !this.ready) return;
    for (let i = Math.max(0, this.dirtyFrom); i < this.bars.length; i++) {
      const b = this.bars[i];
      this.candles.update({ time: b.time, open: b.open, high: b.high, low: b.low, close: b.close });
      this.volume.update(this.volumePoint(b));
    }
    this.dirtyFrom = null;
  }

  addToBars(trade) {
    const time = this.bucket(parseTime(trade.timestamp));
    const price = Number(trade.price);
    const qty = Number(trade.quantity);
    let bar = this.bars[this.bars.length - 1];
    if (!bar || bar.time !== time) {
      if (bar && time < bar.time) return bar;
      bar = { time, open: price, high: price, low: price, close: price, volume: 0 };
      this.bars.push(bar);
    } else {
      bar.high = Math.max(bar.high, price);
      bar.low = Math.min(bar.low, price);
      bar.close = price;
    }
    bar.volume += qty;
    return bar;
  }

  volumePoint(b) {
    return { time: b.time, value: b.volume, color: b.close >= b.open ? this.colors.upVol : this.colors.downVol };
  }
}
