namespace Higher.Conformance.Kernels;

/// <summary>
/// The one table of the unary kernels' test facts: each op's scalar oracle (written from its
/// definition in Kernels.cs, never sharing code with a backend), the range its random inputs are
/// drawn from, its ulp budget against the oracle, and the alpha/beta it is called with. The kernel
/// conformance suite and the device check (tools/DeviceCheck, compiled from this file) both read it;
/// a unary op without a row fails both.
/// </summary>
internal static class UnarySpecs
{
    /// <summary>The oracle, the random input range, the ulp budget and the parameters of each unary op.</summary>
    public static (Func<double, double> F, double Lo, double Hi, double Ulps, double Alpha, double Beta) For(UnaryOp op) => op switch
    {
        UnaryOp.Affine => (x => 1.75 * x - 0.5, -10, 10, 2, 1.75, -0.5),
        UnaryOp.Exp => (Math.Exp, -80, 80, 4, 0, 0),
        UnaryOp.Log => (Math.Log, 1e-6, 1e6, 4, 0, 0),
        UnaryOp.Log1p => (Oracle.Log1p, -0.999, 10, 4, 0, 0),
        UnaryOp.Sqrt => (Math.Sqrt, 0, 1e4, 1, 0, 0),
        UnaryOp.Abs => (Math.Abs, -5, 5, 0, 0, 0),
        UnaryOp.Sign => (x => double.IsNaN(x) ? x : x > 0 ? 1 : x < 0 ? -1 : 0, -5, 5, 0, 0, 0),
        UnaryOp.Relu => (x => double.IsNaN(x) ? x : x > 0 ? x : 0, -5, 5, 0, 0, 0),
        UnaryOp.LeakyRelu => (x => x > 0 ? x : 0.01 * x, -5, 5, 4, 0.01, 0),
        UnaryOp.Tanh => (Math.Tanh, -10, 10, 4, 0, 0),
        UnaryOp.Sigmoid => (Oracle.Sigmoid, -40, 40, 4, 0, 0),
        UnaryOp.Softplus => (Oracle.Softplus, -40, 40, 4, 0, 0),
        UnaryOp.Erf => (Oracle.Erf, -4.5, 4.5, 4, 0, 0),
        UnaryOp.Reciprocal => (x => 1 / x, -10, 10, 1, 0, 0),
        UnaryOp.PowScalar => (x => Math.Pow(x, 2.5), 0, 10, 4, 2.5, 0),
        UnaryOp.Clamp => (x => double.IsNaN(x) ? x : Math.Min(Math.Max(x, -1.5), 2), -5, 5, 0, -1.5, 2),
        UnaryOp.Sin => (Math.Sin, -20, 20, 4, 0, 0),
        UnaryOp.Cos => (Math.Cos, -20, 20, 4, 0, 0),
        _ => throw new ArgumentOutOfRangeException(nameof(op), op, "No oracle."),
    };
}
