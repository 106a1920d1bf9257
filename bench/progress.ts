/**
 * Progress bars on stderr: one line per scenario, redrawn in place on a
 * terminal; elsewhere one line per finished measurement.
 */
const WIDTH = 24;

/** The progress of one scenario over its measurements. */
export class ProgressBar {
  private readonly tty = Boolean(process.stderr.isTTY);
  private done = 0;

  constructor(
    private readonly name: string,
    private readonly total: number,
  ) {}

  /** Shows the current measurement `fraction` done, doing `step`. */
  update(label: string, fraction: number, step: string): void {
    if (!this.tty) return;
    const share = Math.min(1, (this.done + fraction) / this.total);
    const filled = Math.round(share * WIDTH);
    const bar = "█".repeat(filled) + "░".repeat(WIDTH - filled);
    const percent = `${Math.floor(share * 100)}%`.padStart(4);
    const line = `${this.name.padEnd(15)} ${bar} ${percent}  ${label}: ${step}`;
    process.stderr.write(
      `\r\x1b[2K${line.slice(0, process.stderr.columns - 1)}`,
    );
  }

  /** Marks one measurement finished. */
  finish(label: string, summary: string): void {
    this.done += 1;
    if (this.tty) {
      this.update(label, 0, summary);
      if (this.done === this.total) process.stderr.write("\n");
    } else {
      process.stderr.write(
        `${this.name} ${this.done}/${this.total} ${label}: ${summary}\n`,
      );
    }
  }
}
