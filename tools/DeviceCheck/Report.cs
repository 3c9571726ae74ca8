using System.Globalization;
using System.Text;

namespace Higher.DeviceCheck;

/// <summary>One comparison: a kernel or an op in one dtype, its worst error against the tolerance.</summary>
internal sealed record CheckResult(string Section, string Name, string DType, bool Passed, double WorstError, double Tolerance, string Detail = "");

/// <summary>One MAML timing: seconds per meta-iteration on a device.</summary>
internal sealed record TimingResult(string Device, string DType, int Iterations, int MetaBatch, double SecondsPerIteration, double FinalLoss);

/// <summary>The allocator's counters after a number of meta-iterations.</summary>
internal sealed record MemorySample(int Iteration, long BytesInUse, long BytesCached, long PeakBytesInUse, long DeviceAllocations,
    double HitRate, long InducedCollections, long FinalizedReturns, long DeviceFreeBytes);

/// <summary>Collects the results and prints them as one markdown document.</summary>
internal sealed class Report
{
    private readonly List<CheckResult> _checks = [];
    private readonly List<TimingResult> _timings = [];
    private readonly List<MemorySample> _memory = [];
    private readonly List<string> _notes = [];

    public IReadOnlyList<CheckResult> Checks => _checks;

    public bool MemoryFlat { get; set; } = true;

    public string MemoryVerdict { get; set; } = "";

    public bool AllPassed => _checks.All(c => c.Passed) && MemoryFlat && _timings.All(t => double.IsFinite(t.FinalLoss));

    public void Add(CheckResult result) => _checks.Add(result);

    public void Add(TimingResult result) => _timings.Add(result);

    public void Add(MemorySample sample) => _memory.Add(sample);

    public void Note(string note) => _notes.Add(note);

    /// <summary>The whole report: environment, per-section summary, failures, timings, memory.</summary>
    public string ToMarkdown(IReadOnlyList<(string Key, string Value)> environment)
    {
        var s = new StringBuilder();
        s.AppendLine("## Device check");
        s.AppendLine();
        s.AppendLine("| | |");
        s.AppendLine("|---|---|");
        foreach (var (key, value) in environment)
        {
            s.AppendLine(Invariant($"| {key} | {value} |"));
        }
        s.AppendLine();

        s.AppendLine("### Agreement with the Reference backend");
        s.AppendLine();
        s.AppendLine("| section | dtype | cases | passed | failed | worst error | tolerance |");
        s.AppendLine("|---|---|---:|---:|---:|---:|---:|");
        foreach (var group in _checks.GroupBy(c => (c.Section, c.DType)))
        {
            var list = group.ToList();
            int passed = list.Count(c => c.Passed);
            double worst = list.Where(c => !double.IsNaN(c.WorstError)).Select(c => c.WorstError).DefaultIfEmpty(0).Max();
            s.AppendLine(Invariant($"| {group.Key.Section} | {group.Key.DType} | {list.Count} | {passed} | {list.Count - passed} | {Sci(worst)} | {list[0].Tolerance:0E+00} |"));
        }
        s.AppendLine();

        var failures = _checks.Where(c => !c.Passed).ToList();
        if (failures.Count > 0)
        {
            s.AppendLine("### Failures");
            s.AppendLine();
            s.AppendLine("| section | case | dtype | error | detail |");
            s.AppendLine("|---|---|---|---:|---|");
            foreach (var f in failures)
            {
                s.AppendLine(Invariant($"| {f.Section} | {f.Name} | {f.DType} | {Sci(f.WorstError)} | {Escape(f.Detail)} |"));
            }
            s.AppendLine();
        }

        if (_timings.Count > 0)
        {
            s.AppendLine("### MAML sinusoid (1-40-40-1 MLP, K = 10, one inner SGD step, second order)");
            s.AppendLine();
            s.AppendLine("| device | dtype | meta-iterations | meta-batch | ms / meta-iteration | last meta-loss |");
            s.AppendLine("|---|---|---:|---:|---:|---:|");
            foreach (var t in _timings)
            {
                s.AppendLine(Invariant($"| {t.Device} | {t.DType} | {t.Iterations} | {t.MetaBatch} | {t.SecondsPerIteration * 1000:F1} | {t.FinalLoss:F4} |"));
            }
            s.AppendLine();
        }

        if (_memory.Count > 0)
        {
            s.AppendLine("### Device memory over meta-iterations (caching allocator)");
            s.AppendLine();
            s.AppendLine("| iteration | in use (MiB) | cached (MiB) | peak in use (MiB) | cudaMalloc calls | hit rate | induced GCs | finalized returns | device free (MiB) |");
            s.AppendLine("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
            foreach (var m in _memory)
            {
                s.AppendLine(Invariant($"| {m.Iteration} | {MiB(m.BytesInUse)} | {MiB(m.BytesCached)} | {MiB(m.PeakBytesInUse)} | {m.DeviceAllocations} | {m.HitRate:P2} | {m.InducedCollections} | {m.FinalizedReturns} | {MiB(m.DeviceFreeBytes)} |"));
            }
            s.AppendLine();
            s.AppendLine(MemoryVerdict);
            s.AppendLine();
        }

        foreach (string note in _notes)
        {
            s.AppendLine("- " + note);
        }
        int total = _checks.Count, ok = _checks.Count(c => c.Passed);
        s.AppendLine();
        s.AppendLine(Invariant($"**{(AllPassed ? "PASS" : "FAIL")}**: {ok} of {total} comparisons passed{(MemoryFlat ? "" : "; device memory grew")}."));
        return s.ToString();
    }

    private static string Sci(double value) => value.ToString("0.00E+00", CultureInfo.InvariantCulture);

    private static string MiB(long bytes) => (bytes / (1024.0 * 1024.0)).ToString("F1", CultureInfo.InvariantCulture);

    private static string Escape(string text) => text.Replace("|", "\\|", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal);

    private static string Invariant(FormattableString text) => text.ToString(CultureInfo.InvariantCulture);
}
