using Higher.Functional;
using Higher.Nn;
using Higher.Optim;

namespace Higher.Samples.Hyper;

/// <summary>Settings of the hyperparameter-learning run.</summary>
public sealed record HyperConfig
{
    public int OuterSteps { get; init; } = 60;
    public int InnerSteps { get; init; } = 30;
    public double InitialLr { get; init; } = 0.02;
    public double InitialMomentum { get; init; } = 0.3;
    public double MetaLr { get; init; } = 0.05;
    public ulong Seed { get; init; } = 1;
    public Device Device { get; init; } = Device.Cpu;
}

/// <summary>One outer step: the hyperparameters used and the validation loss they reached.</summary>
public readonly record struct HyperPoint(int Step, double Lr, double Momentum, double ValidationLoss);

/// <summary>
/// Learns SGD's learning rate and momentum by differentiating through an unrolled training run:
/// each outer step trains a fresh copy of the same initial network for <see cref="HyperConfig.InnerSteps"/>
/// steps of differentiable SGD whose lr and momentum are override tensors (lr = exp(a), momentum =
/// sigmoid(b)), takes the validation loss at the end, and lets Adam move a and b along its gradient.
/// </summary>
public static class HyperLearning
{
    public static IReadOnlyList<HyperPoint> Run(HyperConfig c, Action<HyperPoint>? log = null)
    {
        var g = new Generator(c.Seed);
        // y = sin(2x) + noise on 32 training points, scored on 128 validation points of [-2, 2].
        var (xTrain, yTrain) = Data(32, 0.1, g, c.Device);
        var (xVal, yVal) = Data(128, 0, g, c.Device);
        var model = new Sequential(new Linear(1, 32, generator: g), new Tanh(), new Linear(32, 1, generator: g));
        model.To(c.Device);
        var innerOpt = new Sgd(model.Parameters(), new SgdOptions { Lr = c.InitialLr, Momentum = c.InitialMomentum });

        var logLr = Tensor.Scalar(Math.Log(c.InitialLr), DType.Float32, c.Device).WithRequiresGrad();
        var logitMomentum = Tensor.Scalar(Math.Log(c.InitialMomentum / (1 - c.InitialMomentum)), DType.Float32, c.Device).WithRequiresGrad();
        var metaOpt = new Adam([logLr, logitMomentum], new AdamOptions { Lr = c.MetaLr });
        var points = new List<HyperPoint>(c.OuterSteps + 1);
        for (int step = 0; step <= c.OuterSteps; step++)
        {
            var lr = logLr.Exp();
            var momentum = logitMomentum.Sigmoid();
            var over = new Override().Set("lr", lr).Set("momentum", momentum);
            using var ctx = InnerLoop.Create(model, innerOpt, copyInitialWeights: true, @override: over);
            var (fmodel, diffopt) = ctx;
            for (int t = 0; t < c.InnerSteps; t++)
            {
                diffopt.Step(F.MseLoss(fmodel.Forward(xTrain), yTrain));
            }
            var validation = F.MseLoss(fmodel.Forward(xVal), yVal);
            var point = new HyperPoint(step, lr.Item(), momentum.Item(), validation.Item());
            points.Add(point);
            log?.Invoke(point);
            if (step == c.OuterSteps)
            {
                break;
            }
            metaOpt.ZeroGrad();
            validation.Backward(); // through all InnerSteps updates into logLr.Grad and logitMomentum.Grad
            metaOpt.Step();
        }
        return points;
    }

    private static (Tensor X, Tensor Y) Data(int n, double noise, Generator g, Device device)
    {
        var x = new double[n];
        var y = new double[n];
        for (int i = 0; i < n; i++)
        {
            x[i] = -2 + (4 * g.NextDouble());
            y[i] = Math.Sin(2 * x[i]) + (noise * ((2 * g.NextDouble()) - 1));
        }
        return (Tensor.FromArray(x, [n, 1], device).To(DType.Float32), Tensor.FromArray(y, [n, 1], device).To(DType.Float32));
    }
}
