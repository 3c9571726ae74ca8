namespace Higher.Implicit;

/// <summary>
/// The optimality condition F(θ, φ) = 0 that an inner solution θ*(φ) satisfies: one residual per entry of θ, of its
/// shape. It must depend on φ only through <paramref name="phi"/> (tensors it captures get no gradient).
/// </summary>
public delegate IReadOnlyList<Tensor> OptimalityCondition(IReadOnlyList<Tensor> theta, IReadOnlyList<Tensor> phi);

/// <summary>An inner objective L(θ, φ), a scalar, that depends on φ only through <paramref name="phi"/>.</summary>
public delegate Tensor InnerObjective(IReadOnlyList<Tensor> theta, IReadOnlyList<Tensor> phi);

/// <summary>
/// An inner solution θ*(φ) attached to the graph by the implicit function theorem (see <see cref="ImplicitDiff"/>):
/// backward passes through <see cref="Solution"/> reach the meta-parameters φ.
/// </summary>
public sealed class ImplicitSolution
{
    internal ImplicitSolution(IReadOnlyList<Tensor> solution, double residual, LinearSolveOptions options)
    {
        Solution = solution;
        OptimalityResidual = residual;
        Options = options;
    }

    /// <summary>θ*(φ): the given solution's values, on the graph (differentiate any function of them).</summary>
    public IReadOnlyList<Tensor> Solution { get; }

    /// <summary>‖F(θ*, φ)‖ at the given solution: how well the inner solver converged (the meta-gradient assumes 0).</summary>
    public double OptimalityResidual { get; }

    /// <summary>The options of the linear solves.</summary>
    public LinearSolveOptions Options { get; }

    /// <summary>The report of the latest backward pass's linear solve; null before the first.</summary>
    public LinearSolveReport? LastSolve { get; internal set; }
}

/// <summary>
/// Implicit differentiation (jaxopt's custom_root, iMAML): the meta-gradient of an inner solution θ*(φ) of
/// F(θ, φ) = 0 without differentiating through the solver. By the implicit function theorem
/// dθ*/dφ = -(∂F/∂θ)⁻¹ ∂F/∂φ, so for an incoming gradient g of θ* the backward pass solves (∂F/∂θ)ᵀ v = g matrix-free
/// (each product a vector-Jacobian product of F, a Hessian-vector product when F is a gradient) and returns
/// -(∂F/∂φ)ᵀ v. Any solver may produce θ*: a plain optimizer run without a tape, a closed form, a library.
/// <code>
/// // iMAML: θ* ≈ argmin L_task(θ) + λ/2 ‖θ - φ‖², found with a plain Sgd; φ gets the implicit meta-gradient
/// var adapted = ImplicitDiff.Minimum(thetaStar, metaParams, (t, _) => TaskLoss(t), proximal: lambda);
/// QueryLoss(adapted.Solution).Backward();
/// </code>
/// The meta-gradient is exact when θ* is an exact root and the solve converges; <see cref="ImplicitSolution.OptimalityResidual"/>
/// and <see cref="ImplicitSolution.LastSolve"/> say how far from that each is. The backward cannot itself be
/// differentiated again (createGraph: true throws <see cref="NotSupportedException"/>).
/// </summary>
public static class ImplicitDiff
{
    /// <summary>
    /// θ*(φ) for a root of the user's <paramref name="condition"/> F(θ, φ) = 0. With the default conjugate gradient,
    /// ∂F/∂θ must be symmetric positive definite (F the gradient of a strongly convex objective); otherwise use
    /// <see cref="LinearSolver.Neumann"/>.
    /// </summary>
    /// <param name="solution">θ*, from any solver (detached here).</param>
    /// <param name="metaParameters">φ: the tensors F depends on that gradients should reach (at least one requires grad).</param>
    /// <param name="condition">F(θ, φ), one residual per entry of θ.</param>
    /// <param name="options">How to solve the linear system.</param>
    public static ImplicitSolution CustomRoot(IReadOnlyList<Tensor> solution, IReadOnlyList<Tensor> metaParameters, OptimalityCondition condition, LinearSolveOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(condition);
        return Root("ImplicitDiff.CustomRoot", solution, metaParameters, condition, options);
    }

    /// <summary>
    /// θ*(φ) for a minimum of <paramref name="innerLoss"/> L(θ, φ) + λ/2 ‖θ - φ‖² (the proximal term of iMAML when
    /// λ = <paramref name="proximal"/> &gt; 0; φ then lists one anchor per entry of θ, of its shape): the optimality
    /// condition is F = ∇θ L + λ(θ - φ), and the system's operator the Hessian H + λI, applied by Hessian-vector products.
    /// </summary>
    /// <param name="solution">θ*, from any solver (detached here).</param>
    /// <param name="metaParameters">φ (at least one requires grad).</param>
    /// <param name="innerLoss">L(θ, φ).</param>
    /// <param name="proximal">λ ≥ 0.</param>
    /// <param name="options">How to solve the linear system.</param>
    public static ImplicitSolution Minimum(IReadOnlyList<Tensor> solution, IReadOnlyList<Tensor> metaParameters, InnerObjective innerLoss, double proximal = 0, LinearSolveOptions? options = null)
    {
        const string call = "ImplicitDiff.Minimum";
        ArgumentNullException.ThrowIfNull(innerLoss);
        ArgumentNullException.ThrowIfNull(solution);
        ArgumentNullException.ThrowIfNull(metaParameters);
        if (!(proximal >= 0) || !double.IsFinite(proximal))
        {
            throw new ArgumentOutOfRangeException(nameof(proximal), proximal, $"{call}: proximal (λ) must be a finite number ≥ 0; got {proximal}.");
        }
        if (proximal > 0)
        {
            if (metaParameters.Count != solution.Count)
            {
                throw new ArgumentException($"{call}: with a proximal term λ(θ - φ), φ needs one anchor per entry of θ: got {metaParameters.Count} meta-parameters for {solution.Count} solution tensors.", nameof(metaParameters));
            }
            for (int i = 0; i < solution.Count; i++)
            {
                if (solution[i] is { } s && metaParameters[i] is { } m && (s.Shape != m.Shape || s.DType != m.DType || s.Device != m.Device))
                {
                    throw new ArgumentException($"{call}: anchor {i} ({m.Describe()} on {m.Device}) does not match solution {i} ({s.Describe()} on {s.Device}).", nameof(metaParameters));
                }
            }
        }
        OptimalityCondition condition = (theta, phi) =>
        {
            var loss = innerLoss(theta, phi) ?? throw new InvalidOperationException($"{call}: the inner loss returned null.");
            if (loss.Numel != 1)
            {
                throw new InvalidOperationException($"{call}: the inner loss is {loss.Describe()}; it must have one element.");
            }
            var residual = new Tensor[theta.Count];
            var grads = loss.RequiresGrad ? Autograd.Grad([loss], theta, createGraph: true, allowUnused: true) : new Tensor?[theta.Count];
            for (int i = 0; i < theta.Count; i++)
            {
                var g = grads[i] ?? Tensor.ZerosLike(theta[i]);
                residual[i] = proximal > 0 ? g + proximal * (theta[i] - phi[i]) : g;
            }
            return residual;
        };
        return Root(call, solution, metaParameters, condition, options);
    }

    private static ImplicitSolution Root(string call, IReadOnlyList<Tensor> solution, IReadOnlyList<Tensor> metaParameters, OptimalityCondition condition, LinearSolveOptions? options)
    {
        ArgumentNullException.ThrowIfNull(solution);
        ArgumentNullException.ThrowIfNull(metaParameters);
        options ??= new LinearSolveOptions();
        options.Validate(call);
        if (solution.Count == 0)
        {
            throw new ArgumentException($"{call}: the solution has no tensors.", nameof(solution));
        }
        for (int i = 0; i < solution.Count; i++)
        {
            var s = solution[i] ?? throw new ArgumentNullException(nameof(solution), $"{call}: solution tensor {i} is null.");
            if (!s.DType.IsFloatingPoint())
            {
                throw new ArgumentException($"{call}: solution tensor {i} is {s.Describe()}; it must be floating point.", nameof(solution));
            }
            if (s.DType != solution[0].DType || s.Device != solution[0].Device)
            {
                throw new ArgumentException(
                    $"{call}: the solution is kept as one vector, so its tensors must share one dtype and device; tensor {i} is {s.Describe()} on {s.Device}, tensor 0 is {solution[0].Describe()} on {solution[0].Device}.", nameof(solution));
            }
        }
        var differentiable = new List<Tensor>();
        for (int i = 0; i < metaParameters.Count; i++)
        {
            var m = metaParameters[i] ?? throw new ArgumentNullException(nameof(metaParameters), $"{call}: meta-parameter {i} is null.");
            if (m.RequiresGrad)
            {
                differentiable.Add(m);
            }
        }
        if (differentiable.Count == 0)
        {
            throw new ArgumentException($"{call}: none of the {metaParameters.Count} meta-parameters requires grad, so no gradient could reach them.", nameof(metaParameters));
        }
        var values = solution.Select(s => s.Detach()).ToArray();
        double residual = CheckCondition(call, values, metaParameters, condition);

        var flat = values.Length == 1 ? values[0].Reshape(-1) : Tensor.Cat(values.Select(v => v.Reshape(-1)).ToArray());
        var output = flat.Detach();
        var pieces = new Tensor[values.Length];
        var result = new ImplicitSolution(pieces, residual, options);
        output.AttachGradFn(new RootNode(new RootBackward(call, values, metaParameters, differentiable, condition, options, result), [.. differentiable], output));
        long offset = 0;
        for (int i = 0; i < values.Length; i++)
        {
            pieces[i] = output.Narrow(0, (int)offset, (int)values[i].Numel).Reshape(values[i].Shape.ToArray());
            offset += values[i].Numel;
        }
        return result;
    }

    /// <summary>Evaluates F once at the solution: checks what it returns and measures ‖F(θ*, φ)‖.</summary>
    private static double CheckCondition(string call, Tensor[] values, IReadOnlyList<Tensor> phi, OptimalityCondition condition)
    {
        using var scope = TensorScope.BeginInternal(call);
        using var grad = Autograd.EnableGrad();
        var theta = values.Select(v => v.Detach().WithRequiresGrad()).ToArray();
        var f = Evaluate(call, condition, theta, phi);
        using var noGrad = Autograd.NoGrad();
        return Math.Sqrt(MatrixFree.Dot(f, f));
    }

    private static IReadOnlyList<Tensor> Evaluate(string call, OptimalityCondition condition, Tensor[] theta, IReadOnlyList<Tensor> phi)
    {
        var f = condition(theta, phi) ?? throw new InvalidOperationException($"{call}: the optimality condition returned null.");
        if (f.Count != theta.Length)
        {
            throw new InvalidOperationException($"{call}: the optimality condition returned {f.Count} residuals for {theta.Length} solution tensors.");
        }
        for (int i = 0; i < f.Count; i++)
        {
            if (f[i] is null || f[i].Shape != theta[i].Shape || f[i].DType != theta[i].DType)
            {
                throw new InvalidOperationException($"{call}: residual {i} of the optimality condition is {(f[i] is null ? "null" : f[i].Describe())}; solution tensor {i} is {theta[i].Describe()}.");
            }
        }
        return f;
    }

    /// <summary>The backward of a root: solve (∂F/∂θ)ᵀ v = g, return -(∂F/∂φ)ᵀ v.</summary>
    private sealed class RootBackward(string call, Tensor[] values, IReadOnlyList<Tensor> phi, List<Tensor> differentiable, OptimalityCondition condition,
        LinearSolveOptions options, ImplicitSolution result)
    {
        public Tensor?[] Backward(Tensor gradFlat)
        {
            if (Autograd.IsGradEnabled)
            {
                throw new NotSupportedException($"The implicit backward of {call} does not record its own graph, so its meta-gradient cannot be differentiated again (createGraph: true).");
            }
            using var scope = TensorScope.BeginInternal($"the implicit backward of {call}");
            Tensor?[] grads;
            using (Autograd.EnableGrad())
            {
                var theta = values.Select(v => v.Detach().WithRequiresGrad()).ToArray();
                var f = Evaluate(call, condition, theta, phi);
                var g = new Tensor[values.Length];
                long offset = 0;
                for (int i = 0; i < values.Length; i++)
                {
                    g[i] = gradFlat.Narrow(0, (int)offset, (int)values[i].Numel).Reshape(values[i].Shape.ToArray());
                    offset += values[i].Numel;
                }
                var fNeeded = f.Where(r => r.RequiresGrad).ToList();
                var fIndex = Enumerable.Range(0, f.Count).Where(i => f[i].RequiresGrad).ToArray();
                IReadOnlyList<Tensor> Vjp(IReadOnlyList<Tensor> v)
                {
                    var zeros = theta.Select(Tensor.ZerosLike).ToArray();
                    if (fNeeded.Count == 0)
                    {
                        return zeros;
                    }
                    var found = Autograd.Grad(fNeeded, theta, fIndex.Select(i => v[i]).ToArray(), allowUnused: true, retainGraph: true);
                    return found.Select((x, i) => x ?? zeros[i]).ToArray();
                }
                var (x, report) = MatrixFree.Solve(Vjp, g, options);
                result.LastSolve = report;
                grads = fNeeded.Count == 0
                    ? new Tensor?[differentiable.Count]
                    : Autograd.Grad(fNeeded, differentiable, fIndex.Select(i => x[i]).ToArray(), allowUnused: true, retainGraph: true);
            }
            using var noGrad = Autograd.NoGrad();
            for (int i = 0; i < grads.Length; i++)
            {
                if (grads[i] is { } gi)
                {
                    grads[i] = scope.Keep(gi.Neg());
                }
            }
            return grads;
        }
    }

    private sealed class RootNode(RootBackward backward, Tensor[] inputs, Tensor output) : Tape.Node(Tape.Saves.None, inputs, output, null)
    {
        internal override string Name => "ImplicitRootBackward";

        protected override Tape.GradList Backward(Tensor gradOutput) => backward.Backward(gradOutput);
    }
}
