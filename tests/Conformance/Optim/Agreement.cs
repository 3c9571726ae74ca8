using Higher.Conformance.Engine;

namespace Higher.Conformance.Optim;

/// <summary>Asserts comparisons against golden values and remembers the worst error, which the test writes to its output.</summary>
/// <param name="tolerance">The largest max-norm relative error accepted.</param>
public sealed class Agreement(double tolerance)
{
    /// <summary>The tolerance.</summary>
    public double Tolerance => tolerance;

    /// <summary>The largest error seen so far.</summary>
    public double Worst { get; private set; }

    /// <summary>Asserts <see cref="Numeric.MaxNormRelativeError"/> ≤ tolerance and records it.</summary>
    public void Check(ReadOnlySpan<double> expected, ReadOnlySpan<double> actual, string what)
    {
        if (expected.Length == actual.Length)
        {
            Record(Numeric.MaxNormRelativeError(expected, actual));
        }
        Numeric.AssertClose(expected, actual, tolerance, what);
    }

    /// <summary>Records an error computed elsewhere.</summary>
    public void Record(double error) => Worst = Math.Max(Worst, error);

    /// <summary>Writes the worst error to the test's output.</summary>
    public void Report(string what) =>
        TestContext.Current.TestOutputHelper?.WriteLine(FormattableString.Invariant($"{what}: worst max-norm relative error {Worst:E2} (tolerance {tolerance:E0})"));
}
