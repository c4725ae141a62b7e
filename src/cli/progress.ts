import cliProgress from "cli-progress";
import { formatBytes } from "./plan.js";

/** Byte progress of a push, reported by the executor; how (or whether) it shows is up to the sink. */
export interface ProgressSink {
  /** More bytes are expected (the plan's files at first, an image once saved). */
  expect(bytes: number): void;
  /** Bytes done. */
  advance(bytes: number, label: string): void;
  /** The push is over (succeeded or not): clear whatever is on screen. */
  end(): void;
}

export const noProgress: ProgressSink = { expect() {}, advance() {}, end() {} };

/** Work shorter than this shows no bar: a bar that flashes for 200 ms is noise. */
const SHOW_AFTER_MS = 1000;

/**
 * A progress bar on a terminal, shown only once the push has taken over a second. Used only
 * when stderr is a TTY (the caller decides), so piped output and logs stay clean.
 */
export class TerminalProgress implements ProgressSink {
  private total = 0;
  private done = 0;
  private label = "";
  private bar: cliProgress.SingleBar | undefined;
  private readonly timer: NodeJS.Timeout;

  constructor(private readonly stream: NodeJS.WriteStream = process.stderr) {
    this.timer = setTimeout(() => this.show(), SHOW_AFTER_MS);
    this.timer.unref();
  }

  private show(): void {
    if (this.bar) return;
    this.bar = new cliProgress.SingleBar(
      {
        stream: this.stream,
        format: "uploading [{bar}] {percentage}% | {doneBytes}/{totalBytes} | {label}",
        hideCursor: true,
        clearOnComplete: true,
        barsize: 30,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(this.total, this.done, this.payload());
  }

  private payload(): Record<string, string> {
    return { doneBytes: formatBytes(this.done), totalBytes: formatBytes(this.total), label: this.label };
  }

  expect(bytes: number): void {
    this.total += bytes;
    this.bar?.setTotal(this.total);
    this.bar?.update(this.done, this.payload());
  }

  advance(bytes: number, label: string): void {
    this.done += bytes;
    this.label = label;
    this.bar?.update(this.done, this.payload());
  }

  end(): void {
    clearTimeout(this.timer);
    this.bar?.stop();
    this.bar = undefined;
  }
}
