using System.Diagnostics;
using System.Globalization;
using Higher;
using Higher.Samples.MamlSinusoid;

// MAML on sinusoid regression (Finn et al. 2017, §5.1) against a jointly trained baseline.
// Usage: dotnet run -c Release --project samples/MamlSinusoid [-- --iterations N] [--first-order] [--float64]
var config = new MamlConfig();
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--iterations": config = config with { Iterations = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--eval-tasks": config = config with { EvalTasks = int.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--seed": config = config with { Seed = ulong.Parse(args[++i], CultureInfo.InvariantCulture) }; break;
        case "--first-order": config = config with { FirstOrder = true }; break;
        case "--float64": config = config with { DType = DType.Float64 }; break;
        default:
            Console.Error.WriteLine($"Unknown argument {args[i]}. Options: --iterations N, --eval-tasks N, --seed N, --first-order, --float64");
            return 2;
    }
}

Console.WriteLine($"MAML sinusoid: {config.Iterations} meta-iterations, meta-batch {config.MetaBatch}, K={config.K}, inner SGD lr {config.InnerLr} x{config.InnerSteps}, meta Adam lr {config.MetaLr}, {config.DType.Name()}{(config.FirstOrder ? ", first-order" : "")}");
var clock = Stopwatch.StartNew();
int every = Math.Max(1, config.Iterations / 10);
var maml = Maml.MetaTrain(config, (it, loss) =>
{
    if ((it + 1) % every == 0)
    {
        Console.WriteLine($"  meta-iteration {it + 1,6}: mean query loss after adaptation {loss:F4}  ({clock.Elapsed.TotalSeconds:F1} s)");
    }
});
double mamlSeconds = clock.Elapsed.TotalSeconds;
clock.Restart();
var baseline = Maml.Pretrain(config);
double baselineSeconds = clock.Elapsed.TotalSeconds;

var mamlEval = Maml.Evaluate(maml, config);
var baseEval = Maml.Evaluate(baseline, config);
Console.WriteLine();
Console.WriteLine($"Query MSE on {config.EvalTasks} held-out tasks ({config.K} support points, {config.EvalQueryPoints} query points, SGD lr {config.InnerLr}):");
Console.WriteLine($"| model | {string.Join(" | ", config.EvalSteps.Select(s => $"{s} steps"))} | train time |");
Console.WriteLine($"|---|{string.Concat(config.EvalSteps.Select(_ => "---|"))}---|");
Console.WriteLine($"| MAML | {string.Join(" | ", mamlEval.Select(v => v.ToString("F3", CultureInfo.InvariantCulture)))} | {mamlSeconds:F0} s |");
Console.WriteLine($"| pretrained on all tasks | {string.Join(" | ", baseEval.Select(v => v.ToString("F3", CultureInfo.InvariantCulture)))} | {baselineSeconds:F0} s |");
return 0;
