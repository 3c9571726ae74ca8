using Higher.Functional;
using Higher.Implicit;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Implicit;

/// <summary>
/// Implicit meta-gradients (<see cref="ImplicitDiff"/>) against closed forms of quadratic inner problems (solved in
/// the test by Gaussian elimination, in float64), against the unrolled meta-gradient of a strongly convex problem run to
/// convergence, and the matrix-free solvers against a known matrix; and their failure twins.
/// </summary>
public sealed class ImplicitDiffTests
{
    private const int N = 5;
    private const int M = 3;

    /// <summary>A = I + 0.3·GᵀG (eigenvalues in [1, ~3]), B, c, d, φ from a seeded generator.</summary>
    private static (double[,] A, double[,] B, double[] C, double[] D, double[] Phi) Problem()
    {
        var g = new Generator(77);
        var gm = new double[N, N];
        for (int i = 0; i < N; i++)
        {
            for (int j = 0; j < N; j++)
            {
                gm[i, j] = g.NextDouble() - 0.5;
            }
        }
        var a = new double[N, N];
        for (int i = 0; i < N; i++)
        {
            for (int j = 0; j < N; j++)
            {
                double s = 0;
                for (int k = 0; k < N; k++)
                {
                    s += gm[k, i] * gm[k, j];
                }
                a[i, j] = (i == j ? 1 : 0) + 0.3 * s;
            }
        }
        var b = new double[N, M];
        for (int i = 0; i < N; i++)
        {
            for (int j = 0; j < M; j++)
            {
                b[i, j] = g.NextDouble() - 0.5;
            }
        }
        var c = Enumerable.Range(0, N).Select(_ => g.NextDouble()).ToArray();
        var d = Enumerable.Range(0, M).Select(_ => g.NextDouble()).ToArray();
        var phi = Enumerable.Range(0, M).Select(_ => g.NextDouble() * 2 - 1).ToArray();
        return (a, b, c, d, phi);
    }

    /// <summary>x = A⁻¹ r by Gaussian elimination with partial pivoting (the oracle, independent of the library).</summary>
    private static double[] SolveDense(double[,] a, double[] r)
    {
        int n = r.Length;
        var m = (double[,])a.Clone();
        var x = (double[])r.Clone();
        for (int col = 0; col < n; col++)
        {
            int pivot = col;
            for (int i = col + 1; i < n; i++)
            {
                if (Math.Abs(m[i, col]) > Math.Abs(m[pivot, col]))
                {
                    pivot = i;
                }
            }
            for (int j = 0; j < n; j++)
            {
                (m[col, j], m[pivot, j]) = (m[pivot, j], m[col, j]);
            }
            (x[col], x[pivot]) = (x[pivot], x[col]);
            for (int i = col + 1; i < n; i++)
            {
                double f = m[i, col] / m[col, col];
                for (int j = col; j < n; j++)
                {
                    m[i, j] -= f * m[col, j];
                }
                x[i] -= f * x[col];
            }
        }
        for (int i = n - 1; i >= 0; i--)
        {
            double s = x[i];
            for (int j = i + 1; j < n; j++)
            {
                s -= m[i, j] * x[j];
            }
            x[i] = s / m[i, i];
        }
        return x;
    }

    private static double[] MatVec(double[,] a, double[] v)
    {
        var r = new double[a.GetLength(0)];
        for (int i = 0; i < r.Length; i++)
        {
            for (int j = 0; j < v.Length; j++)
            {
                r[i] += a[i, j] * v[j];
            }
        }
        return r;
    }

    private static double[] TransposeVec(double[,] a, double[] v)
    {
        var r = new double[a.GetLength(1)];
        for (int j = 0; j < r.Length; j++)
        {
            for (int i = 0; i < v.Length; i++)
            {
                r[j] += a[i, j] * v[i];
            }
        }
        return r;
    }

    private static void AssertRelative(double[] expected, double[] actual, double tolerance, string what)
    {
        double scale = expected.Max(Math.Abs);
        Assert.True(scale > 0, $"{what}: an all-zero oracle proves nothing.");
        for (int i = 0; i < expected.Length; i++)
        {
            double err = Math.Abs(expected[i] - actual[i]);
            Assert.True(err <= tolerance * scale, $"{what}: element {i}: expected {expected[i]:R}, got {actual[i]:R} (relative error {err / scale:E2}).");
        }
    }

    private static Tensor Vec(double[] v) => Tensor.FromArray(v, [v.Length]);

    private static Tensor Mat(double[,] m) => Tensor.FromArray(m);

    /// <summary>θ* of ½θᵀAθ - θᵀ(Bφ) + λ/2‖θ - anchor‖² by a plain Sgd on a leaf, with no tape kept across steps.</summary>
    private static Tensor SolveWithPlainSgd(Func<Tensor, Tensor> loss, int n)
    {
        var theta = Tensor.Zeros([n], DType.Float64).WithRequiresGrad();
        var opt = new Sgd([theta], new SgdOptions { Lr = 0.25 });
        for (int i = 0; i < 600; i++)
        {
            opt.ZeroGrad();
            loss(theta).Backward();
            opt.Step();
        }
        return theta.Detach();
    }

    /// <summary>L(θ*(φ)) = ½‖θ* - c‖² + d·φ with θ* = A⁻¹Bφ: ∇φ = Bᵀ A⁻¹ (θ* - c) + d.</summary>
    private static double[] ClosedFormQuadratic(double[,] a, double[,] b, double[] c, double[] d, double[] phi)
    {
        var thetaStar = SolveDense(a, MatVec(b, phi));
        var w = SolveDense(a, thetaStar.Select((t, i) => t - c[i]).ToArray());
        return TransposeVec(b, w).Select((x, i) => x + d[i]).ToArray();
    }

    [Theory]
    [InlineData(LinearSolver.ConjugateGradient)]
    [InlineData(LinearSolver.Neumann)]
    public void Minimum_OfAQuadratic_MatchesTheClosedForm(LinearSolver solver)
    {
        var (a, b, c, d, phiValues) = Problem();
        var at = Mat(a);
        var bt = Mat(b);
        var phi = Vec(phiValues).WithRequiresGrad();
        Tensor Inner(Tensor theta, Tensor p) => 0.5 * (theta * at.MatMul(theta)).Sum() - (theta * bt.MatMul(p)).Sum();
        Tensor thetaStar;
        using (Autograd.NoGrad())
        {
            var fixedPhi = phi.Detach();
            thetaStar = SolveWithPlainSgd(t => { using var on = Autograd.EnableGrad(); return Inner(t, fixedPhi); }, N);
        }
        var options = new LinearSolveOptions { Solver = solver, Tolerance = 1e-13, MaxIterations = 400, NeumannStep = 0.3 };
        var root = ImplicitDiff.Minimum([thetaStar], [phi], (t, p) => Inner(t[0], p[0]), options: options);
        Assert.True(root.OptimalityResidual < 1e-12, $"the plain Sgd should have converged: ‖∇L(θ*)‖ = {root.OptimalityResidual:E2}");
        var outer = 0.5 * (root.Solution[0] - Vec(c)).Square().Sum() + (phi * Vec(d)).Sum();
        outer.Backward();
        AssertRelative(ClosedFormQuadratic(a, b, c, d, phiValues), phi.Grad!.ToDoubleArray(), 1e-8, $"{solver} meta-gradient");
        var report = root.LastSolve!;
        Assert.Equal(solver, report.Solver);
        Assert.True(report.Converged, report.ToString());
        Assert.True(report.RelativeResidual <= 1e-13, report.ToString());
        Assert.InRange(report.Iterations, 1, 400);
    }

    /// <summary>custom_root: the user's own F(θ, φ) = Aθ - Bφ (no objective), the same closed form.</summary>
    [Fact]
    public void CustomRoot_OfALinearCondition_MatchesTheClosedForm()
    {
        var (a, b, c, d, phiValues) = Problem();
        var at = Mat(a);
        var bt = Mat(b);
        var phi = Vec(phiValues).WithRequiresGrad();
        var thetaStar = Vec(SolveDense(a, MatVec(b, phiValues)));
        var root = ImplicitDiff.CustomRoot([thetaStar], [phi], (t, p) => [at.MatMul(t[0]) - bt.MatMul(p[0])], new LinearSolveOptions { Tolerance = 1e-14 });
        var outer = 0.5 * (root.Solution[0] - Vec(c)).Square().Sum() + (phi * Vec(d)).Sum();
        var grad = Autograd.Grad(outer, phi);
        AssertRelative(ClosedFormQuadratic(a, b, c, d, phiValues), grad.ToDoubleArray(), 1e-8, "custom_root meta-gradient");
    }

    /// <summary>iMAML: argmin ½θᵀAθ - rᵀθ + λ/2‖θ - φ‖², θ* = (A + λI)⁻¹(r + λφ), so ∇φ ½‖θ* - c‖² = λ (A + λI)⁻¹ (θ* - c).</summary>
    [Fact]
    public void Minimum_WithProximalTerm_MatchesIMamlClosedForm()
    {
        const double lambda = 0.7;
        var (a, _, c, _, _) = Problem();
        var g = new Generator(5);
        var r = Enumerable.Range(0, N).Select(_ => g.NextDouble()).ToArray();
        var anchor = Enumerable.Range(0, N).Select(_ => g.NextDouble() - 0.5).ToArray();
        var at = Mat(a);
        var phi = Vec(anchor).WithRequiresGrad();
        var shifted = (double[,])a.Clone();
        for (int i = 0; i < N; i++)
        {
            shifted[i, i] += lambda;
        }
        Tensor Task(Tensor theta) => 0.5 * (theta * at.MatMul(theta)).Sum() - (theta * Vec(r)).Sum();
        var fixedAnchor = phi.Detach();
        var thetaStar = SolveWithPlainSgd(t => Task(t) + 0.5 * lambda * (t - fixedAnchor).Square().Sum(), N);
        var root = ImplicitDiff.Minimum([thetaStar], [phi], (t, _) => Task(t[0]), proximal: lambda, new LinearSolveOptions { Tolerance = 1e-13 });
        (0.5 * (root.Solution[0] - Vec(c)).Square().Sum()).Backward();

        var expectedTheta = SolveDense(shifted, r.Select((v, i) => v + lambda * anchor[i]).ToArray());
        AssertRelative(expectedTheta, thetaStar.ToDoubleArray(), 1e-10, "θ* from the plain Sgd");
        var expected = SolveDense(shifted, expectedTheta.Select((t, i) => t - c[i]).ToArray()).Select(v => lambda * v).ToArray();
        AssertRelative(expected, phi.Grad!.ToDoubleArray(), 1e-8, "iMAML meta-gradient");
    }

    /// <summary>
    /// A strongly convex inner problem (L2-regularized logistic regression with a meta-learned log-penalty) unrolled
    /// 400 SGD steps on the tape to convergence: its meta-gradient and the implicit one at the unroll's end agree.
    /// </summary>
    [Fact]
    public void Minimum_MatchesTheUnrolledMetaGradient_OfAConvergedStronglyConvexProblem()
    {
        var g = new Generator(21);
        var x = Tensor.Rand([20, 4], DType.Float64, g) * 2.0 - 1.0;
        var y = (Tensor.Rand([20, 1], DType.Float64, g) < 0.5).Cast(DType.Float64);
        var xv = Tensor.Rand([10, 4], DType.Float64, g) * 2.0 - 1.0;
        var yv = (Tensor.Rand([10, 1], DType.Float64, g) < 0.5).Cast(DType.Float64);
        var logPenalty = Tensor.Scalar(Math.Log(0.5), DType.Float64).WithRequiresGrad();
        Tensor Inner(Tensor w, Tensor logLambda) => F.BinaryCrossEntropyWithLogits(x.MatMul(w.Transpose(0, 1)), y) + 0.5 * logLambda.Exp() * w.Square().Sum();
        Tensor Validation(Tensor w) => F.BinaryCrossEntropyWithLogits(xv.MatMul(w.Transpose(0, 1)), yv);

        var model = new Linear(4, 1, bias: false, generator: new Generator(3));
        model.To(DType.Float64);
        using var ctx = InnerLoop.Create(model, new Sgd(model.Parameters(), new SgdOptions { Lr = 0.5 }));
        var (fmodel, diffopt) = ctx;
        for (int t = 0; t < 400; t++)
        {
            diffopt.Step(Inner(fmodel.FastParams[0], logPenalty));
        }
        var unrolled = Autograd.Grad(Validation(fmodel.FastParams[0]), logPenalty).Item();

        var root = ImplicitDiff.Minimum([fmodel.FastParams[0].Detach()], [logPenalty], (w, p) => Inner(w[0], p[0]));
        var implicitGrad = Autograd.Grad(Validation(root.Solution[0]), logPenalty).Item();
        Assert.True(Math.Abs(unrolled) > 1e-4, $"the meta-gradient should not vanish ({unrolled})");
        Assert.True(Math.Abs(unrolled - implicitGrad) <= 1e-8 * Math.Abs(unrolled), $"unrolled {unrolled:R}, implicit {implicitGrad:R}");
    }

    [Fact]
    public void MatrixFree_SolvesAKnownSystem_AndReportsWhatItReached()
    {
        var (a, _, c, _, _) = Problem();
        var at = Mat(a);
        IReadOnlyList<Tensor> Apply(IReadOnlyList<Tensor> v) => [at.MatMul(v[0])];
        var (x, report) = MatrixFree.Solve(Apply, [Vec(c)], new LinearSolveOptions { Tolerance = 1e-14 });
        AssertRelative(SolveDense(a, c), x[0].ToDoubleArray(), 1e-12, "CG solution");
        Assert.True(report.Converged);
        Assert.InRange(report.Iterations, 1, 2 * N);

        var (_, partial) = MatrixFree.Solve(Apply, [Vec(c)], new LinearSolveOptions { Solver = LinearSolver.Neumann, NeumannStep = 0.3, MaxIterations = 2, Tolerance = 1e-12 });
        Assert.False(partial.Converged);
        Assert.Equal(2, partial.Iterations);
        Assert.True(partial.RelativeResidual > 1e-3, partial.ToString());
        var e = Assert.Throws<ImplicitSolveException>(() => MatrixFree.Solve(Apply, [Vec(c)], new LinearSolveOptions { MaxIterations = 1, Tolerance = 1e-12, ThrowIfNotConverged = true }));
        Assert.False(e.Report.Converged);
        Assert.Contains("not converged", e.Message);
    }

    [Fact]
    public void BadInput_IsRefusedNamingTheCall()
    {
        var phi = Tensor.Zeros([N], DType.Float64).WithRequiresGrad();
        var theta = Tensor.Zeros([N], DType.Float64);
        InnerObjective loss = (t, p) => (t[0] * p[0]).Sum() + t[0].Square().Sum();

        var e1 = Assert.Throws<ArgumentException>(() => ImplicitDiff.Minimum([theta], [phi], loss, options: new LinearSolveOptions { MaxIterations = 0 }));
        Assert.Contains("ImplicitDiff.Minimum", e1.Message);
        Assert.Contains("MaxIterations", e1.Message);
        var e2 = Assert.Throws<ArgumentException>(() => ImplicitDiff.Minimum([theta], [phi.Detach()], loss));
        Assert.Contains("requires grad", e2.Message);
        var e3 = Assert.Throws<ArgumentException>(() => ImplicitDiff.Minimum([theta], [Tensor.Zeros([N + 1], DType.Float64).WithRequiresGrad()], loss, proximal: 1));
        Assert.Contains("anchor 0", e3.Message);
        Assert.Throws<ArgumentOutOfRangeException>(() => ImplicitDiff.Minimum([theta], [phi], loss, proximal: double.NaN));
        var e4 = Assert.Throws<InvalidOperationException>(() => ImplicitDiff.CustomRoot([theta], [phi], (t, p) => [t[0], p[0]]));
        Assert.Contains("2 residuals for 1", e4.Message);
        var e5 = Assert.Throws<ArgumentException>(() => ImplicitDiff.CustomRoot([theta, Tensor.Zeros([2])], [phi], (t, p) => t));
        Assert.Contains("one dtype and device", e5.Message);
        Assert.Null(phi.Grad);

        var root = ImplicitDiff.Minimum([theta], [phi], loss);
        var outer = root.Solution[0].Square().Sum();
        var e6 = Assert.Throws<NotSupportedException>(() => Autograd.Grad([outer], [phi], createGraph: true));
        Assert.Contains("createGraph", e6.Message);
    }
}
