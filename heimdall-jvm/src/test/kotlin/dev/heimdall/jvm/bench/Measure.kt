// How the JVM benchmarks measure: warm up, then time many batches of calls with System.nanoTime, and report the
// median of the batches' per-call times (a batch of many calls hides the timer's own cost; the median hides the
// batches a GC pause, a JIT compilation or the other core's load fell on). A hand-written harness rather than JMH:
// JMH's code generation runs as a javac annotation processor, which Kotlin sources would reach only through kapt
// or a separate bytecode-generation step and a separate runner outside JUnit; for figures of a microsecond and
// more, batches and a median are enough.
//
// A figure that misses its target is printed with MISSED, never failed (the CI machine has two noisy cores);
// only correctness is asserted.
package dev.heimdall.jvm.bench

import java.util.Locale
import kotlin.math.roundToInt

/** The per-call times (ns) of the recorded batches of one measurement, each of [batchSize] calls. */
class Timing(perCallNs: DoubleArray, private val batchSize: Int) {
    private val sorted: DoubleArray = perCallNs.sortedArray()

    init {
        require(sorted.isNotEmpty()) { "no batch recorded" }
    }

    /** The [q] quantile of the batches' per-call times (0.5: the median). */
    fun quantile(q: Double): Double = sorted[((sorted.size - 1) * q).roundToInt()]

    val median: Double get() = quantile(0.5)

    override fun toString(): String = fmt(
        "median %.0f ns (min %.0f, p90 %.0f) per call, %d batches of %d",
        median, sorted.first(), quantile(0.9), sorted.size, batchSize,
    )
}

/** Where measured results go, so that the JIT cannot drop a call whose result is unused. */
object Sink {
    @Volatile
    var value: Long = 0
}

/** Batches recorded at least, whatever the time budget. */
const val MIN_BATCHES: Int = 5

/**
 * Times [call]: [warmup] batches unrecorded, then up to [batches] recorded ones (fewer, but at least
 * [MIN_BATCHES], when [budgetSeconds] have passed since the first), each of [batchSize] calls. [call] gets the
 * number of the call since the start (to cycle through a request mix) and returns something derived from its
 * result, which is kept.
 */
inline fun timeBatches(warmup: Int, batches: Int, batchSize: Int, budgetSeconds: Double, call: (Int) -> Long): Timing {
    var kept = 0L
    var n = 0
    repeat(warmup * batchSize) { kept += call(n++) }
    val perCall = DoubleArray(batches)
    val deadline = System.nanoTime() + (budgetSeconds * 1e9).toLong()
    var recorded = 0
    while (recorded < batches && (recorded < MIN_BATCHES || System.nanoTime() < deadline)) {
        val start = System.nanoTime()
        for (i in 0 until batchSize) kept += call(n++)
        perCall[recorded++] = (System.nanoTime() - start).toDouble() / batchSize
    }
    Sink.value += kept
    return Timing(perCall.copyOf(recorded), batchSize)
}

/** `target=<=5us met` or `target=<=5us MISSED`. */
fun verdict(target: String, met: Boolean): String = "target=$target ${if (met) "met" else "MISSED"}"

/** [String.format] with dots as decimal separators, whatever the locale. */
fun fmt(format: String, vararg args: Any?): String = String.format(Locale.ROOT, format, *args)

/** A detail line on stderr (stdout holds only the benchmark's one line). */
fun detail(line: String) = System.err.println("  $line")

/** How busy the machine was (the load averages), for the detail lines. */
fun loadAverage(): String = runCatching { java.io.File("/proc/loadavg").readText().trim() }.getOrDefault("unknown")
