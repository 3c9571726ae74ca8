using Higher.Conformance.Kernels;

namespace Higher.DeviceCheck;

/// <summary>
/// Every kernel case of <see cref="KernelCases"/> (the table the conformance suite runs, compiled from
/// its source), on the Reference backend and on the candidate with the same inputs: float64 within
/// 1e-10, float32 within 1e-5.
/// </summary>
internal static class KernelChecks
{
    /// <summary>Runs every case in float32 and float64.</summary>
    public static void Run(IBackend reference, IBackend candidate, Report report)
    {
        foreach (var (name, run) in KernelCases.All())
        {
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                report.Add(Check(name, run, dtype, reference, candidate));
            }
        }
    }

    private static CheckResult Check(string name, KernelCases.KernelCase run, DType dtype, IBackend reference, IBackend candidate)
    {
        double tolerance = dtype == DType.Float32 ? 1e-5 : 1e-10;
        try
        {
            run(reference, dtype);
        }
        catch (NotSupportedException e)
        {
            return new CheckResult("kernels", name, dtype.Name(), true, 0, tolerance, "not supported by the Reference backend either: " + e.Message);
        }
        try
        {
            var (worst, detail) = KernelCases.Compare(run, name, dtype, reference, candidate);
            return new CheckResult("kernels", name, dtype.Name(), worst <= tolerance, worst, tolerance, worst <= tolerance ? "" : detail);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new CheckResult("kernels", name, dtype.Name(), false, double.PositiveInfinity, tolerance, $"{e.GetType().Name}: {e.Message}");
        }
    }
}
