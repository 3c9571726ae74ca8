using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Conformance.Higher;

/// <summary>
/// Meta-gradients stay finite when second moments are exactly zero (higher #125): a parameter
/// whose gradient is exactly 0 at every step (a dead ReLU) leaves Adam's v, RMSprop's and Adagrad's
/// sums at 0, where √'s derivative is infinite. The meta-gradients w.r.t. every initial weight and
/// the hyperparameter tensors have no NaN or infinity, and equal those of the same run with that
/// parameter frozen. (The golden "*_zero" cases check the same against PyTorch where a second
/// moment is zero for one step and non-zero later.)
/// </summary>
public sealed class ZeroMomentTests
{
    /// <summary>out = x Wᵀ + b + Σ relu(dead), with dead &lt; 0: dead's gradient is exactly 0.</summary>
    private sealed class DeadUnitModel : Module
    {
        private readonly Parameter _w;
        private readonly Parameter _b;
        private readonly Parameter _dead;

        public DeadUnitModel(Generator g)
        {
            _w = RegisterParameter("W", Tensor.Randn([2, 3], DType.Float64, g))!;
            _b = RegisterParameter("b", Tensor.Randn([2], DType.Float64, g))!;
            _dead = RegisterParameter("dead", Tensor.Full([3], -1, DType.Float64))!;
        }

        public Parameter Dead => _dead;

        public override Tensor Forward(Tensor input) => Tensor.Linear(input, _w.Value, _b.Value) + _dead.Value.Relu().Sum();
    }

    public static TheoryData<string, string, string[]> Cases => new()
    {
        { "adam", "", ["lr", "beta1", "beta2"] },
        { "adam", "amsgrad", ["lr", "beta1", "beta2"] },
        { "adamw", "", ["lr", "beta1", "beta2", "weight_decay"] },
        { "rmsprop", "", ["lr", "alpha"] },
        { "rmsprop", "centered", ["lr", "alpha", "momentum"] },
        { "adagrad", "", ["lr", "lr_decay"] },
        { "adadelta", "", ["lr", "rho"] },
        { "adamax", "", ["lr", "beta1", "beta2"] },
        { "nadam", "", ["lr", "beta1", "beta2"] },
        { "radam", "", ["lr", "beta1", "beta2"] },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void MetaGradients_AreFinite_WhenSecondMomentsAreExactlyZero(string optimizer, string flag, string[] hypers)
    {
        var results = new List<(Tensor?[] Weights, Tensor?[] Hypers)>();
        foreach (bool frozen in new[] { false, true })
        {
            var g = new Generator(70);
            var model = new DeadUnitModel(g);
            model.Dead.RequiresGrad = !frozen;
            var options = new Dictionary<string, double> { ["lr"] = 0.05 };
            if (flag.Length > 0)
            {
                options[flag] = 1;
            }
            if (optimizer == "radam")
            {
                options["beta2"] = 0.8;
            }
            var opt = Optimizers.Create(optimizer, model.Parameters(), options);
            var group = opt.ParamGroups[0];
            var tensors = hypers.Select(n => Tensor.Scalar(n == "momentum" ? 0.5 : group[n], DType.Float64).WithRequiresGrad()).ToArray();
            var ov = new Override();
            for (int i = 0; i < hypers.Length; i++)
            {
                ov.Set(hypers[i], tensors[i]);
            }
            int steps = optimizer == "radam" ? 8 : 3;
            using var ctx = InnerLoop.Create(model, opt, copyInitialWeights: false, @override: ov);
            var (fmodel, diffopt) = ctx;
            for (int s = 0; s < steps; s++)
            {
                diffopt.Step(F.MseLoss(fmodel.Forward(TestModels.Rand(g, 5, 3)), TestModels.Rand(g, 5, 2)));
            }
            if (optimizer == "adamw" && !frozen)
            {
                // Decoupled weight decay shrinks a weight whose gradient is zero too (as torch's AdamW).
                Assert.All(fmodel.FastWeight("dead").ToDoubleArray(), v => Assert.InRange(v, -1 + 1e-6, -0.9));
            }
            else
            {
                Check.Same(Tensor.Full([3], -1, DType.Float64), fmodel.FastWeight("dead"), "the dead parameter does not move");
            }
            var query = F.MseLoss(fmodel.Forward(TestModels.Rand(g, 5, 3)), TestModels.Rand(g, 5, 2));
            var time0 = fmodel.Parameters(0).Where(p => p.RequiresGrad).ToList();
            var grads = Autograd.Grad([query], [.. time0, .. tensors], allowUnused: true).Select(t => t is null ? null : ctx.Keep(t)).ToArray();
            var weightGrads = grads[..time0.Count];
            if (!frozen)
            {
                Assert.All(weightGrads, (t, i) => Check.Finite(t, $"{optimizer} {flag}: meta-gradient w.r.t. weight {i}"));
                Assert.True(weightGrads[2]!.ToDoubleArray().All(v => v == 0), "the dead parameter's meta-gradient is 0");
                weightGrads = weightGrads[..2];
            }
            Assert.All(grads[time0.Count..], (t, i) => Check.Finite(t, $"{optimizer} {flag}: meta-gradient w.r.t. {hypers[i]}"));
            results.Add((weightGrads, grads[time0.Count..]));
        }
        Check.Close(results[1].Weights.Select(t => t!).ToList(), results[0].Weights, 1e-13, $"{optimizer} {flag}: weights' meta-gradient vs the frozen run");
        Check.Close(results[1].Hypers.Select(t => t!).ToList(), results[0].Hypers, 1e-13, $"{optimizer} {flag}: hyperparameters' meta-gradient vs the frozen run");
    }
}
