namespace Higher.Conformance.Kernels;

/// <summary>
/// The one table of the unary kernels' test facts: each op's scalar oracle (written from its
/// definition in Kernels.cs, never sharing code with a backend), the range its random inputs are
/// drawn from, its ulp budget against the oracle, the alpha/beta it is called with, and a smooth
/// interval for gradchecks of its derivative row. The kernel conformance suite, the gradcheck
/// catalog and the device check (compiled from this file) all read it; a unary op without a row
/// fails all three.
/// </summary>
internal static class UnarySpecs
{
    /// <summary>One unary kernel's test facts.</summary>
    /// <param name="F">The scalar oracle.</param>
    /// <param name="Lo">Low end of the kernel tests' random inputs.</param>
    /// <param name="Hi">High end of the kernel tests' random inputs.</param>
    /// <param name="Ulps">The ulp budget against the oracle.</param>
    /// <param name="Alpha">The kernel's alpha in the tests.</param>
    /// <param name="Beta">The kernel's beta in the tests.</param>
    /// <param name="GradLo">Low end of a smooth interval (no kink, no pole) for finite-difference gradchecks.</param>
    /// <param name="GradHi">High end of that interval.</param>
    public readonly record struct UnarySpec(Func<double, double> F, double Lo, double Hi, double Ulps, double Alpha, double Beta, double GradLo, double GradHi);

    /// <summary>The row of <paramref name="op"/>; an op without one throws, failing every suite that reads the table.</summary>
    public static UnarySpec For(UnaryOp op) => op switch
    {
        UnaryOp.Affine => new(x => 1.75 * x - 0.5, -10, 10, 2, 1.75, -0.5, -2, 2),
        UnaryOp.Exp => new(Math.Exp, -80, 80, 4, 0, 0, -2, 2),
        UnaryOp.Log => new(Math.Log, 1e-6, 1e6, 4, 0, 0, 0.2, 3),
        UnaryOp.Log1p => new(Oracle.Log1p, -0.999, 10, 4, 0, 0, -0.7, 3),
        UnaryOp.Sqrt => new(Math.Sqrt, 0, 1e4, 1, 0, 0, 0.2, 3),
        UnaryOp.Abs => new(Math.Abs, -5, 5, 0, 0, 0, 0.1, 2),
        UnaryOp.Sign => new(x => double.IsNaN(x) ? x : x > 0 ? 1 : x < 0 ? -1 : 0, -5, 5, 0, 0, 0, 0.1, 2),
        UnaryOp.Relu => new(x => double.IsNaN(x) ? x : x > 0 ? x : 0, -5, 5, 0, 0, 0, 0.1, 2),
        UnaryOp.LeakyRelu => new(x => x > 0 ? x : 0.01 * x, -5, 5, 4, 0.01, 0, 0.1, 2),
        UnaryOp.Tanh => new(Math.Tanh, -10, 10, 4, 0, 0, -3, 3),
        UnaryOp.Sigmoid => new(Oracle.Sigmoid, -40, 40, 4, 0, 0, -4, 4),
        UnaryOp.Softplus => new(Oracle.Softplus, -40, 40, 4, 0, 0, -6, 6),
        UnaryOp.Erf => new(Oracle.Erf, -4.5, 4.5, 4, 0, 0, -2, 2),
        UnaryOp.Reciprocal => new(x => 1 / x, -10, 10, 1, 0, 0, 0.3, 3),
        UnaryOp.PowScalar => new(x => Math.Pow(x, 2.5), 0, 10, 4, 2.5, 0, 0.2, 3),
        UnaryOp.Clamp => new(x => double.IsNaN(x) ? x : Math.Min(Math.Max(x, -1.5), 2), -5, 5, 0, -1.5, 2, -1.3, 1.8),
        UnaryOp.Sin => new(Math.Sin, -20, 20, 4, 0, 0, -3, 3),
        UnaryOp.Cos => new(Math.Cos, -20, 20, 4, 0, 0, -3, 3),
        UnaryOp.Expm1 => new(Expm1, -40, 40, 4, 0, 0, -2, 2),
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "No oracle."),
    };

    /// <summary>eˣ - 1 from its Taylor series Σ_{k≥1} xᵏ/k! (summed smallest term first) for |x| &lt; 0.5; elsewhere exp(x) - 1 cancels at most a bit or two.</summary>
    private static double Expm1(double x)
    {
        if (double.IsNaN(x) || Math.Abs(x) >= 0.5)
        {
            return Math.Exp(x) - 1;
        }
        var terms = new double[30];
        double term = 1;
        for (int k = 1; k <= terms.Length; k++)
        {
            term *= x / k;
            terms[k - 1] = term;
        }
        double sum = 0;
        for (int k = terms.Length - 1; k >= 0; k--)
        {
            sum += terms[k];
        }
        return sum;
    }
}
