using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using Higher;
using Higher.Cuda;
using Higher.DeviceCheck;
using Higher.Reference;

// The device check: CUDA against the Reference backend, kernel by kernel and op by op (first and
// second order), a MAML sinusoid timing on both, and the allocator over a long MAML run; prints
// one markdown report. Runs as a NativeAOT binary on a GPU machine without .NET (tools/device-check.sh).
// Exit codes: 0 every check passed, 1 a check failed, 2 bad arguments, 3 CUDA unavailable (nothing ran).
const int ExitPassed = 0, ExitFailed = 1, ExitUsage = 2, ExitNoCuda = 3;

var options = Options.Parse(args);
if (options is null)
{
    Console.Error.WriteLine(Options.Usage);
    return ExitUsage;
}

var environment = new List<(string, string)>
{
    ("date (UTC)", DateTime.UtcNow.ToString("yyyy-MM-dd HH:mm", CultureInfo.InvariantCulture)),
    ("host", $"{Environment.MachineName}, {Environment.ProcessorCount} logical CPUs, {RuntimeInformation.OSDescription}"),
    ("runtime", $"{RuntimeInformation.FrameworkDescription} ({(RuntimeFeature.IsDynamicCodeCompiled ? "JIT" : "NativeAOT")})"),
};

Device candidate;
CudaBackend? cuda = null;
if (options.SelfTest)
{
    candidate = new Device(DeviceType.Cpu, 1);
    Backends.Register(new Higher.GradCheck.ForwardingBackend(new ReferenceBackend(), candidate));
    environment.Add(("candidate", "cpu:1 = the Reference backend again (--self-test: checks the harness, not a GPU)"));
}
else
{
    if (!CudaBackend.TryGetShared(out cuda, out string reason))
    {
        Console.WriteLine($"CUDA backend unavailable: {reason}");
        Console.WriteLine("No device check ran (exit code 3). On a machine without a GPU, `DeviceCheck --self-test` exercises the harness.");
        return ExitNoCuda;
    }
    Backends.Register(cuda!);
    candidate = cuda!.Device;
    var (_, total) = cuda.GetMemoryInfo();
    environment.Add(("card", $"{cuda.DeviceName} ({total / (1L << 30)} GiB)"));
    environment.Add(("CUDA runtime / driver", $"{Version(cuda.RuntimeVersion)} / {Version(cuda.DriverVersion)}"));
    environment.Add(("candidate", $"{candidate} (CudaBackend)"));
}
environment.Add(("reference", $"cpu (ReferenceBackend, {ReferenceBackend.Instance.MaxDegreeOfParallelism} threads)"));

var report = new Report();
Section("kernels vs Reference", () => KernelChecks.Run(ReferenceBackend.Instance, Backends.For(candidate), report));
Section("gradients vs Reference", () => GradientChecks.Run(candidate, options.CasesPerOp, report));
if (options.MamlIterations > 0)
{
    Section("MAML timing", () => MamlChecks.Time(candidate, options.MamlIterations, report));
}
if (cuda is not null && options.MemoryIterations > 0)
{
    Section("device memory", () => MamlChecks.Memory(cuda, options.MemoryIterations, options.MemoryMetaBatch, report));
}
else if (options.MemoryIterations > 0)
{
    report.Note("Device memory: not measured (no CUDA allocator in --self-test).");
}

string markdown = report.ToMarkdown(environment);
Console.WriteLine(markdown);
if (options.OutputPath is { } path)
{
    File.WriteAllText(path, markdown);
}
return report.AllPassed ? ExitPassed : ExitFailed;

void Section(string name, Action run)
{
    Console.Error.WriteLine($"[{name}] ...");
    int before = report.Checks.Count;
    var clock = Stopwatch.StartNew();
    try
    {
        run();
    }
    catch (Exception e) when (e is not OutOfMemoryException)
    {
        report.Add(new CheckResult(name, "section stopped", "-", false, double.PositiveInfinity, 0, $"{e.GetType().Name}: {e.Message}"));
    }
    int failed = report.Checks.Skip(before).Count(c => !c.Passed);
    string summary = string.Create(CultureInfo.InvariantCulture,
        $"{name}: {report.Checks.Count - before} comparisons, {failed} failed, {clock.Elapsed.TotalSeconds:F1} s");
    Console.Error.WriteLine($"[{name}] {summary}");
    report.Note(summary);
}

static string Version(int v) => string.Create(CultureInfo.InvariantCulture, $"{v / 1000}.{v % 1000 / 10}");

/// <summary>Command-line options.</summary>
internal sealed record Options
{
    public const string Usage = """
        Usage: DeviceCheck [--self-test] [--quick] [--cases N] [--maml-iterations N]
                           [--memory-iterations N] [--memory-meta-batch N] [--out FILE]
          --self-test            candidate = the Reference backend on cpu:1 (no GPU needed; checks the harness)
          --quick                1 case per op, 3 MAML iterations, 20 memory iterations
          --cases N              random cases per op and dtype for the gradient checks (default 4)
          --maml-iterations N    timed MAML meta-iterations per device, meta-batch 25 (default 20; 0 skips)
          --memory-iterations N  MAML meta-iterations for the allocator statistics (default 1000; 0 skips)
          --memory-meta-batch N  tasks per meta-iteration in that run (default 5)
          --out FILE             also write the markdown report to FILE
        Exit codes: 0 passed, 1 a check failed, 2 bad arguments, 3 CUDA unavailable.
        """;

    public bool SelfTest { get; init; }

    public int CasesPerOp { get; init; } = 4;

    public int MamlIterations { get; init; } = 20;

    public int MemoryIterations { get; init; } = 1000;

    public int MemoryMetaBatch { get; init; } = 5;

    public string? OutputPath { get; init; }

    /// <summary>The options, or null when the arguments are not understood.</summary>
    public static Options? Parse(string[] args)
    {
        var o = new Options();
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (arg == "--self-test")
            {
                o = o with { SelfTest = true };
                continue;
            }
            if (arg == "--quick")
            {
                o = o with { CasesPerOp = 1, MamlIterations = 3, MemoryIterations = 20 };
                continue;
            }
            if (i + 1 >= args.Length)
            {
                return null;
            }
            string value = args[++i];
            if (arg == "--out")
            {
                o = o with { OutputPath = value };
                continue;
            }
            if (!int.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out int n))
            {
                return null;
            }
            o = arg switch
            {
                "--cases" when n > 0 => o with { CasesPerOp = n },
                "--maml-iterations" => o with { MamlIterations = n },
                "--memory-iterations" => o with { MemoryIterations = n },
                "--memory-meta-batch" when n > 0 => o with { MemoryMetaBatch = n },
                _ => null,
            };
            if (o is null)
            {
                return null;
            }
        }
        return o;
    }
}
