namespace Higher.Implicit;

/// <summary>How the linear system of implicit differentiation is solved.</summary>
public enum LinearSolver
{
    /// <summary>
    /// Conjugate gradient: for a symmetric positive definite operator (the Hessian at a strict minimum, iMAML's H + λI).
    /// On another operator it stops at a direction of non-positive curvature and returns the iterate whose residual was smallest.
    /// </summary>
    ConjugateGradient,

    /// <summary>
    /// Neumann series: x = α Σₖ (I - αA)ᵏ b, which converges when the spectral radius of I - αA is below 1
    /// (for a symmetric positive definite A: 0 &lt; α &lt; 2/λmax). Needs no symmetry.
    /// </summary>
    Neumann,
}

/// <summary>Options of a matrix-free solve of A x = b.</summary>
public sealed record LinearSolveOptions
{
    /// <summary>The method (conjugate gradient by default).</summary>
    public LinearSolver Solver { get; init; } = LinearSolver.ConjugateGradient;

    /// <summary>Most operator applications (CG iterations, Neumann terms); at least 1.</summary>
    public int MaxIterations { get; init; } = 100;

    /// <summary>Stop once the relative residual ‖A x - b‖ / ‖b‖ is at most this (CG), or the last Neumann term is this small relative to b; ≥ 0.</summary>
    public double Tolerance { get; init; } = 1e-10;

    /// <summary>The Neumann series' step α (&gt; 0).</summary>
    public double NeumannStep { get; init; } = 1.0;

    /// <summary>Throw <see cref="ImplicitSolveException"/> when the tolerance was not reached (false: report it only).</summary>
    public bool ThrowIfNotConverged { get; init; }

    /// <summary>Throws naming <paramref name="call"/> and the option unless every option is valid.</summary>
    internal void Validate(string call)
    {
        if (!Enum.IsDefined(Solver))
        {
            throw new ArgumentException($"{call}: Solver {(int)Solver} is not a LinearSolver.");
        }
        if (MaxIterations < 1)
        {
            throw new ArgumentException($"{call}: MaxIterations must be at least 1; got {MaxIterations}.");
        }
        if (!(Tolerance >= 0) || !double.IsFinite(Tolerance))
        {
            throw new ArgumentException($"{call}: Tolerance must be a finite number ≥ 0; got {Tolerance}.");
        }
        if (!(NeumannStep > 0) || !double.IsFinite(NeumannStep))
        {
            throw new ArgumentException($"{call}: NeumannStep must be a finite positive number; got {NeumannStep}.");
        }
    }
}

/// <summary>What a solve reached.</summary>
/// <param name="Solver">The method used.</param>
/// <param name="Iterations">Operator applications made (besides the one that measures the final residual).</param>
/// <param name="RelativeResidual">‖A x - b‖ / ‖b‖ of the returned x, measured with one more application of A (0 when b = 0).</param>
/// <param name="Converged">Whether <see cref="RelativeResidual"/> is within the tolerance.</param>
public sealed record LinearSolveReport(LinearSolver Solver, int Iterations, double RelativeResidual, bool Converged)
{
    /// <inheritdoc/>
    public override string ToString() =>
        FormattableString.Invariant($"{Solver}: {Iterations} iterations, relative residual {RelativeResidual:E3}{(Converged ? "" : " (not converged)")}");
}

/// <summary>A solve that did not reach its tolerance, with <see cref="LinearSolveOptions.ThrowIfNotConverged"/> on.</summary>
public sealed class ImplicitSolveException : Exception
{
    /// <summary>An exception carrying the report.</summary>
    public ImplicitSolveException(string message, LinearSolveReport report) : base(message) => Report = report;

    /// <summary>An exception with a message only.</summary>
    public ImplicitSolveException(string message) : base(message) => Report = new LinearSolveReport(LinearSolver.ConjugateGradient, 0, double.NaN, false);

    /// <summary>An exception with a message and an inner exception.</summary>
    public ImplicitSolveException(string message, Exception inner) : base(message, inner) => Report = new LinearSolveReport(LinearSolver.ConjugateGradient, 0, double.NaN, false);

    /// <summary>What the solve reached.</summary>
    public LinearSolveReport Report { get; }
}

/// <summary>
/// Matrix-free solvers of A x = b where A is known only through its products A·v (a Hessian-vector product,
/// a vector-Jacobian product) and x, b are lists of tensors (one per parameter). The vector arithmetic runs without
/// recording; each iteration reads two or three scalars back to the host for its step sizes and stopping test.
/// </summary>
public static class MatrixFree
{
    /// <summary>Solves A x = b by <paramref name="options"/>' method, starting from x = 0.</summary>
    /// <param name="apply">v ↦ A v (same shapes as v).</param>
    /// <param name="b">The right-hand side.</param>
    /// <param name="options">Method, iterations and tolerance.</param>
    public static (IReadOnlyList<Tensor> Solution, LinearSolveReport Report) Solve(Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>> apply, IReadOnlyList<Tensor> b, LinearSolveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(apply);
        ArgumentNullException.ThrowIfNull(b);
        options ??= new LinearSolveOptions();
        options.Validate("MatrixFree.Solve");
        if (b.Count == 0)
        {
            throw new ArgumentException("MatrixFree.Solve: the right-hand side has no tensors.", nameof(b));
        }
        for (int i = 0; i < b.Count; i++)
        {
            ArgumentNullException.ThrowIfNull(b[i], $"{nameof(b)}[{i}]");
        }
        using var noGrad = Autograd.NoGrad();
        var checkedApply = Checked(apply, b);
        return options.Solver == LinearSolver.Neumann ? Neumann(checkedApply, b, options) : ConjugateGradient(checkedApply, b, options);
    }

    private static Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>> Checked(Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>> apply, IReadOnlyList<Tensor> b) => v =>
    {
        var av = apply(v) ?? throw new InvalidOperationException("MatrixFree.Solve: the operator returned null.");
        if (av.Count != b.Count)
        {
            throw new InvalidOperationException($"MatrixFree.Solve: the operator returned {av.Count} tensors for {b.Count}.");
        }
        for (int i = 0; i < av.Count; i++)
        {
            if (av[i] is null || av[i].Shape != b[i].Shape || av[i].DType != b[i].DType)
            {
                throw new InvalidOperationException($"MatrixFree.Solve: the operator returned {(av[i] is null ? "null" : av[i].Describe())} for entry {i}, which is {b[i].Describe()}.");
            }
        }
        return av;
    };

    private static (IReadOnlyList<Tensor>, LinearSolveReport) ConjugateGradient(Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>> apply, IReadOnlyList<Tensor> b, LinearSolveOptions o)
    {
        double bNorm = Math.Sqrt(Dot(b, b));
        var x = b.Select(Tensor.ZerosLike).ToArray();
        if (bNorm == 0)
        {
            return (x, new LinearSolveReport(LinearSolver.ConjugateGradient, 0, 0, true));
        }
        var r = b.ToArray();
        var p = b.ToArray();
        double rr = Dot(r, r);
        // On an operator that is not positive definite the residual can grow: the iterate of the smallest residual is returned.
        var best = x.ToArray();
        double bestRr = rr;
        int it = 0;
        while (it < o.MaxIterations && Math.Sqrt(rr) > o.Tolerance * bNorm)
        {
            var ap = apply(p);
            double pAp = Dot(p, ap);
            it++;
            if (!(pAp > 0))
            {
                // Not positive definite along p (or a breakdown): stop with what was reached; the residual says how good it is.
                break;
            }
            double alpha = rr / pAp;
            for (int i = 0; i < x.Length; i++)
            {
                x[i] = x[i] + alpha * p[i];
                r[i] = r[i] - alpha * ap[i];
            }
            double next = Dot(r, r);
            if (next < bestRr)
            {
                bestRr = next;
                Array.Copy(x, best, x.Length);
            }
            double beta = next / rr;
            rr = next;
            for (int i = 0; i < p.Length; i++)
            {
                p[i] = r[i] + beta * p[i];
            }
        }
        return (best, Report(LinearSolver.ConjugateGradient, apply, best, b, bNorm, it, o));
    }

    private static (IReadOnlyList<Tensor>, LinearSolveReport) Neumann(Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>> apply, IReadOnlyList<Tensor> b, LinearSolveOptions o)
    {
        double bNorm = Math.Sqrt(Dot(b, b));
        double alpha = o.NeumannStep;
        var term = b.ToArray();
        var sum = b.ToArray();
        int it = 0;
        if (bNorm > 0)
        {
            while (it < o.MaxIterations)
            {
                var at = apply(term);
                it++;
                for (int i = 0; i < term.Length; i++)
                {
                    term[i] = term[i] - alpha * at[i];
                    sum[i] = sum[i] + term[i];
                }
                if (Math.Sqrt(Dot(term, term)) <= o.Tolerance * bNorm)
                {
                    break;
                }
            }
        }
        var x = sum.Select(s => alpha * s).ToArray();
        return (x, Report(LinearSolver.Neumann, apply, x, b, bNorm, it, o));
    }

    private static LinearSolveReport Report(LinearSolver solver, Func<IReadOnlyList<Tensor>, IReadOnlyList<Tensor>> apply, Tensor[] x, IReadOnlyList<Tensor> b, double bNorm, int it, LinearSolveOptions o)
    {
        double residual = 0;
        if (bNorm > 0)
        {
            var ax = apply(x);
            var diff = new Tensor[x.Length];
            for (int i = 0; i < x.Length; i++)
            {
                diff[i] = ax[i] - b[i];
            }
            residual = Math.Sqrt(Dot(diff, diff)) / bNorm;
        }
        var report = new LinearSolveReport(solver, it, residual, residual <= o.Tolerance);
        if (!report.Converged && o.ThrowIfNotConverged)
        {
            throw new ImplicitSolveException($"MatrixFree.Solve: {report} (tolerance {o.Tolerance}, at most {o.MaxIterations} iterations).", report);
        }
        return report;
    }

    /// <summary>Σᵢ ⟨aᵢ, bᵢ⟩ as a double.</summary>
    internal static double Dot(IReadOnlyList<Tensor> a, IReadOnlyList<Tensor> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Count; i++)
        {
            sum += (a[i] * b[i]).Sum().Item();
        }
        return sum;
    }
}
