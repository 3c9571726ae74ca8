using Higher.GradCheck;

namespace Higher.DeviceCheck;

/// <summary>
/// GradCheck's cross-backend property, outside xunit: the same catalog (<see cref="OpCatalog"/>) and
/// the same measure (<see cref="Agreement"/>) as tests/GradCheck's CrossBackendTests, compiled from
/// the same sources; tol 1e-10 in float64 and 1e-5 in float32.
/// </summary>
internal static class GradientChecks
{
    public static void Run(Device candidate, int casesPerOp, Report report)
    {
        foreach (var (op, build) in OpCatalog.All)
        {
            foreach (var dtype in new[] { DType.Float32, DType.Float64 })
            {
                report.Add(Agree(op, build, dtype, candidate, casesPerOp));
            }
        }
    }

    private static CheckResult Agree(string op, Func<CaseGen, OpCase> build, DType dtype, Device candidate, int casesPerOp)
    {
        double tolerance = dtype == DType.Float32 ? 1e-5 : 1e-10;
        const string suite = "gradients (1st, 2nd order)";
        try
        {
            var outcome = Agreement.Measure(build, dtype, Device.Cpu, candidate, casesPerOp);
            if (outcome.Failure is { } failure)
            {
                return new CheckResult(suite, op, dtype.Name(), false, double.PositiveInfinity, tolerance, failure);
            }
            bool passed = outcome.Worst <= tolerance;
            return new CheckResult(suite, op, dtype.Name(), passed, outcome.Worst, tolerance, passed ? "" : outcome.Detail);
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            return new CheckResult(suite, op, dtype.Name(), false, double.PositiveInfinity, tolerance, $"{e.GetType().Name}: {e.Message}");
        }
    }
}
