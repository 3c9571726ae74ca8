using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text;

namespace Higher.GradCheck;

/// <summary>Thrown by <see cref="GradChecker"/> when analytical and numerical derivatives disagree.</summary>
public sealed class GradCheckException : Exception
{
    public GradCheckException()
    {
    }

    public GradCheckException(string message) : base(message)
    {
    }

    public GradCheckException(string message, Exception innerException) : base(message, innerException)
    {
    }
}

/// <summary>
/// torch.autograd.gradcheck and gradgradcheck for Higher, in float64.
/// <para>
/// <see cref="GradCheck"/> compares, for every output element j and every input element k,
/// the analytical ∂y_j/∂x_k (one vector-Jacobian product per output element, with a one-hot
/// gradient output, through <see cref="Autograd.Grad(IReadOnlyList{Tensor}, IReadOnlyList{Tensor}, IReadOnlyList{Tensor?}?, bool, bool, bool?)"/>)
/// with the central difference (y(x + ε e_k) - y(x - ε e_k)) / 2ε. An entry passes when
/// |analytical - numerical| ≤ atol + rtol·|numerical| (torch's allclose); any non-finite entry fails.
/// </para>
/// <para>
/// <see cref="GradGradCheck"/> runs the same check on the function (x, v) ↦ vjp(x, v) = vᵀ·∂f/∂x,
/// computed with <c>createGraph: true</c>, for random gradient outputs v: its analytical Jacobian
/// is the second-order backward (w.r.t. x: Σ_j v_j ∇²f_j; w.r.t. v: Jᵀ), its numerical one comes
/// from central differences of the first-order analytical VJP, exactly as torch's gradgradcheck.
/// </para>
/// Inputs must be Float64; outputs may be any floating dtype. The functions must be
/// deterministic: they are evaluated 2·(number of input elements) + 1 times.
/// </summary>
public static class GradChecker
{
    /// <summary>Checks the first derivatives of a one-output function (see the class summary).</summary>
    /// <param name="f">The function; it receives tensors of the inputs' shapes, on their devices.</param>
    /// <param name="inputs">Float64 points to differentiate at (they are not modified; leaves are made from them).</param>
    /// <param name="eps">Central-difference step.</param>
    /// <param name="atol">Absolute tolerance.</param>
    /// <param name="rtol">Tolerance relative to the numerical value.</param>
    /// <param name="name">Name of the op for the failure message (default: the source text of <paramref name="f"/>).</param>
    /// <param name="expression">Filled in by the compiler.</param>
    public static void GradCheck(Func<Tensor[], Tensor> f, Tensor[] inputs, double eps = 1e-6, double atol = 1e-5, double rtol = 1e-3,
        string? name = null, [CallerArgumentExpression(nameof(f))] string expression = "")
    {
        ArgumentNullException.ThrowIfNull(f);
        GradCheckMany(xs => [f(xs)], inputs, eps, atol, rtol, name ?? expression);
    }

    /// <summary>Checks the first derivatives of every output of a many-output function.</summary>
    public static void GradCheckMany(Func<Tensor[], Tensor[]> f, Tensor[] inputs, double eps = 1e-6, double atol = 1e-5, double rtol = 1e-3,
        string? name = null, [CallerArgumentExpression(nameof(f))] string expression = "")
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(inputs);
        var labels = new string[inputs.Length];
        for (int i = 0; i < labels.Length; i++)
        {
            labels[i] = "x" + i.ToString(CultureInfo.InvariantCulture);
        }
        CheckJacobian("GradCheck", name ?? expression, f, inputs, labels, o => "y" + o.ToString(CultureInfo.InvariantCulture), eps, atol, rtol);
    }

    /// <summary>
    /// Checks the second derivatives of a one-output function: the derivative of its VJP with
    /// respect to the inputs and to the gradient output (see the class summary).
    /// </summary>
    /// <param name="f">The function.</param>
    /// <param name="inputs">Float64 points to differentiate at.</param>
    /// <param name="gradOutput">The gradient output v; default: standard normal drawn from <paramref name="seed"/>.</param>
    /// <param name="seed">Seed of the random gradient output.</param>
    /// <param name="eps">Central-difference step.</param>
    /// <param name="atol">Absolute tolerance.</param>
    /// <param name="rtol">Relative tolerance.</param>
    /// <param name="name">Name of the op for the failure message.</param>
    /// <param name="expression">Filled in by the compiler.</param>
    public static void GradGradCheck(Func<Tensor[], Tensor> f, Tensor[] inputs, Tensor? gradOutput = null, ulong seed = 0,
        double eps = 1e-6, double atol = 1e-5, double rtol = 1e-3, string? name = null, [CallerArgumentExpression(nameof(f))] string expression = "")
    {
        ArgumentNullException.ThrowIfNull(f);
        GradGradCheckMany(xs => [f(xs)], inputs, gradOutput is null ? null : [gradOutput], seed, eps, atol, rtol, name ?? expression);
    }

    /// <summary>Second-order check of a many-output function, one gradient output per output.</summary>
    public static void GradGradCheckMany(Func<Tensor[], Tensor[]> f, Tensor[] inputs, Tensor[]? gradOutputs = null, ulong seed = 0,
        double eps = 1e-6, double atol = 1e-5, double rtol = 1e-3, string? name = null, [CallerArgumentExpression(nameof(f))] string expression = "")
    {
        ArgumentNullException.ThrowIfNull(f);
        ArgumentNullException.ThrowIfNull(inputs);
        CheckInputs("GradGradCheck", name ?? expression, inputs);
        int n = inputs.Length;
        if (gradOutputs is null)
        {
            Tensor[] ys;
            using (Autograd.NoGrad())
            {
                ys = f(inputs);
            }
            var generator = new Generator(seed);
            gradOutputs = new Tensor[ys.Length];
            for (int o = 0; o < ys.Length; o++)
            {
                gradOutputs[o] = Tensor.Randn(ys[o].Shape, DType.Float64, generator, ys[o].Device).To(ys[o].DType);
            }
        }

        // The function (x, v) -> vjp(x, v). Points handed to it by the finite differences are
        // plain tensors, so it makes leaves of them; the analytical pass gives it the checker's leaves.
        Tensor[] Vjp(Tensor[] xs)
        {
            using var record = Autograd.EnableGrad();
            var leaves = new Tensor[n];
            for (int i = 0; i < n; i++)
            {
                leaves[i] = xs[i].RequiresGrad ? xs[i] : xs[i].Detach().WithRequiresGrad();
            }
            var ys = f(leaves);
            var recorded = new List<Tensor>();
            var vs = new List<Tensor>();
            for (int o = 0; o < ys.Length; o++)
            {
                // Outputs that are not recorded are constants: they add nothing to the VJP.
                if (ys[o].RequiresGrad)
                {
                    recorded.Add(ys[o]);
                    vs.Add(xs[n + o].To(ys[o].DType));
                }
            }
            var grads = recorded.Count > 0 ? Autograd.Grad(recorded, leaves, vs, createGraph: true, allowUnused: true) : new Tensor?[n];
            var result = new Tensor[n];
            for (int i = 0; i < n; i++)
            {
                result[i] = grads[i] ?? Tensor.ZerosLike(leaves[i]);
            }
            return result;
        }

        var points = new Tensor[n + gradOutputs.Length];
        var labels = new string[points.Length];
        for (int i = 0; i < n; i++)
        {
            points[i] = inputs[i];
            labels[i] = "x" + i.ToString(CultureInfo.InvariantCulture);
        }
        for (int o = 0; o < gradOutputs.Length; o++)
        {
            points[n + o] = gradOutputs[o].To(DType.Float64);
            labels[n + o] = "v" + o.ToString(CultureInfo.InvariantCulture) + " (grad of y" + o.ToString(CultureInfo.InvariantCulture) + ")";
        }
        CheckJacobian("GradGradCheck", name ?? expression, Vjp, points, labels, o => "vjp_x" + o.ToString(CultureInfo.InvariantCulture), eps, atol, rtol);
    }

    private static void CheckInputs(string kind, string name, Tensor[] inputs)
    {
        for (int i = 0; i < inputs.Length; i++)
        {
            if (inputs[i].DType != DType.Float64)
            {
                throw new ArgumentException($"{kind} of {name}: input {i} is {inputs[i].DType.Name()} {inputs[i].Shape}; finite differences need float64 inputs.");
            }
        }
    }

    private static void CheckJacobian(string kind, string name, Func<Tensor[], Tensor[]> f, Tensor[] inputs, string[] inputLabels,
        Func<int, string> outputLabel, double eps, double atol, double rtol)
    {
        CheckInputs(kind, name, inputs);
        int n = inputs.Length;
        var baseValues = new double[n][];
        var leaves = new Tensor[n];
        for (int i = 0; i < n; i++)
        {
            baseValues[i] = inputs[i].ToDoubleArray();
            leaves[i] = inputs[i].Detach().WithRequiresGrad();
        }

        // Analytical: row j of the Jacobian of output o is the VJP with the one-hot e_j.
        Tensor[] ys;
        using (Autograd.EnableGrad())
        {
            ys = f(leaves);
        }
        var outShapes = new Shape[ys.Length];
        var analytical = new double[ys.Length][][,];
        for (int o = 0; o < ys.Length; o++)
        {
            var y = ys[o];
            if (!y.DType.IsFloatingPoint())
            {
                throw new ArgumentException($"{kind} of {name}: output {o} is {y.DType.Name()}; only floating-point outputs can be checked.");
            }
            outShapes[o] = y.Shape;
            int rows = checked((int)y.Numel);
            analytical[o] = new double[n][,];
            for (int i = 0; i < n; i++)
            {
                analytical[o][i] = new double[rows, baseValues[i].Length];
            }
            if (!y.RequiresGrad)
            {
                // Not recorded (a constant, e.g. a backward that is identically zero): its analytical
                // Jacobian is zero, so the numerical one must be too.
                continue;
            }
            // Even a zero-size output gets one (empty) backward: the engine must not crash on it.
            var oneHot = new double[rows];
            for (int j = 0; j < Math.Max(rows, 1); j++)
            {
                if (rows > 0)
                {
                    Array.Clear(oneHot);
                    oneHot[j] = 1;
                }
                var seed = Tensor.FromArray(oneHot, y.Shape, y.Device).To(y.DType);
                var grads = Autograd.Grad([y], leaves, [seed], allowUnused: true, retainGraph: true);
                for (int i = 0; i < n; i++)
                {
                    var g = grads[i];
                    if (g is null)
                    {
                        continue;
                    }
                    if (g.Shape != leaves[i].Shape || g.DType != DType.Float64)
                    {
                        throw new GradCheckException($"{kind} of {name}: the gradient of {inputLabels[i]} is {g.DType.Name()} {g.Shape}, expected float64 {leaves[i].Shape}.");
                    }
                    if (rows == 0)
                    {
                        continue;
                    }
                    var values = g.ToDoubleArray();
                    for (int k = 0; k < values.Length; k++)
                    {
                        analytical[o][i][j, k] = values[k];
                    }
                }
            }
        }

        // Numerical: central differences, one input element at a time.
        var numerical = new double[ys.Length][][,];
        for (int o = 0; o < ys.Length; o++)
        {
            numerical[o] = new double[n][,];
            for (int i = 0; i < n; i++)
            {
                numerical[o][i] = new double[outShapes[o].Numel, baseValues[i].Length];
            }
        }
        using (Autograd.NoGrad())
        {
            for (int i = 0; i < n; i++)
            {
                for (int k = 0; k < baseValues[i].Length; k++)
                {
                    var plus = Evaluate(f, inputs, baseValues[i], i, k, baseValues[i][k] + eps);
                    var minus = Evaluate(f, inputs, baseValues[i], i, k, baseValues[i][k] - eps);
                    for (int o = 0; o < ys.Length; o++)
                    {
                        if (plus[o].Length != outShapes[o].Numel || minus[o].Length != outShapes[o].Numel)
                        {
                            throw new GradCheckException($"{kind} of {name}: output {o} changed size under a perturbation of {inputLabels[i]}.");
                        }
                        for (int j = 0; j < plus[o].Length; j++)
                        {
                            numerical[o][i][j, k] = (plus[o][j] - minus[o][j]) / (2 * eps);
                        }
                    }
                }
            }
        }

        Compare(kind, name, inputs, inputLabels, outShapes, outputLabel, analytical, numerical, eps, atol, rtol);
    }

    private static double[][] Evaluate(Func<Tensor[], Tensor[]> f, Tensor[] inputs, double[] values, int i, int k, double value)
    {
        var data = (double[])values.Clone();
        data[k] = value;
        var xs = new Tensor[inputs.Length];
        for (int t = 0; t < xs.Length; t++)
        {
            xs[t] = inputs[t].Detach();
        }
        xs[i] = Tensor.FromArray(data, inputs[i].Shape, inputs[i].Device);
        var ys = f(xs);
        var result = new double[ys.Length][];
        for (int o = 0; o < ys.Length; o++)
        {
            result[o] = ys[o].ToDoubleArray();
        }
        return result;
    }

    private static void Compare(string kind, string name, Tensor[] inputs, string[] inputLabels, Shape[] outShapes, Func<int, string> outputLabel,
        double[][][,] analytical, double[][][,] numerical, double eps, double atol, double rtol)
    {
        double worstRatio = -1;
        (int O, int I, int J, int K) worst = default;
        int bad = 0, total = 0;
        for (int o = 0; o < analytical.Length; o++)
        {
            for (int i = 0; i < inputs.Length; i++)
            {
                var a = analytical[o][i];
                var m = numerical[o][i];
                for (int j = 0; j < a.GetLength(0); j++)
                {
                    for (int k = 0; k < a.GetLength(1); k++)
                    {
                        total++;
                        double an = a[j, k], nu = m[j, k];
                        double allowed = atol + rtol * Math.Abs(nu);
                        double ratio = double.IsFinite(an) && double.IsFinite(nu) ? Math.Abs(an - nu) / allowed : double.PositiveInfinity;
                        if (ratio > 1)
                        {
                            bad++;
                        }
                        if (ratio > worstRatio)
                        {
                            worstRatio = ratio;
                            worst = (o, i, j, k);
                        }
                    }
                }
            }
        }
        if (bad == 0)
        {
            return;
        }
        var (wo, wi, wj, wk) = worst;
        double wa = analytical[wo][wi][wj, wk], wn = numerical[wo][wi][wj, wk];
        var sb = new StringBuilder();
        sb.Append(CultureInfo.InvariantCulture, $"{kind} failed for {name}: {bad} of {total} Jacobian entries are out of tolerance (eps = {eps:G3}, atol = {atol:G3}, rtol = {rtol:G3}).");
        sb.AppendLine();
        sb.Append("  inputs: ");
        for (int i = 0; i < inputs.Length; i++)
        {
            sb.Append(i > 0 ? ", " : "").Append(inputLabels[i]).Append(' ').Append(inputs[i].Shape).Append(' ').Append(inputs[i].DType.Name());
        }
        sb.AppendLine();
        sb.Append("  outputs: ");
        for (int o = 0; o < outShapes.Length; o++)
        {
            sb.Append(o > 0 ? ", " : "").Append(outputLabel(o)).Append(' ').Append(outShapes[o]);
        }
        sb.AppendLine();
        sb.Append(CultureInfo.InvariantCulture,
            $"  worst: d {outputLabel(wo)}{Index(outShapes[wo], wj)} / d {inputLabels[wi]}{Index(inputs[wi].Shape, wk)}: analytical = {wa:R}, numerical = {wn:R}, |diff| = {Math.Abs(wa - wn):G6}, allowed = {atol + rtol * Math.Abs(wn):G6}");
        sb.AppendLine();
        sb.Append(CultureInfo.InvariantCulture, $"  at {inputLabels[wi]} = {FormatValues(inputs[wi])}");
        throw new GradCheckException(sb.ToString());
    }

    /// <summary>Formats flat index <paramref name="flat"/> of <paramref name="shape"/> as "[i, j, k]".</summary>
    internal static string Index(Shape shape, long flat) => Agreement.Index(shape, flat);

    private static string FormatValues(Tensor t)
    {
        var v = t.ToDoubleArray();
        const int Max = 32;
        var parts = v.Take(Max).Select(x => x.ToString("G6", CultureInfo.InvariantCulture));
        return "[" + string.Join(", ", parts) + (v.Length > Max ? ", ..." : "") + "] (flat)";
    }
}
