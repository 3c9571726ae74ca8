using System.CommandLine;
using Higher.Samples.Hyper;

namespace Higher.Samples;

/// <summary>hyper: learn SGD's learning rate and momentum through an unrolled training run.</summary>
internal static class HyperCommand
{
    public static Command Create()
    {
        var d = new HyperConfig();
        var outer = Cli.Int("--outer-steps", "Hyperparameter updates", d.OuterSteps);
        var inner = Cli.Int("--inner-steps", "SGD steps unrolled per update", d.InnerSteps);
        var lr = Cli.Positive("--lr", "Initial inner learning rate", d.InitialLr);
        var momentum = new Option<double>("--momentum") { Description = "Initial inner momentum, in (0, 1)", DefaultValueFactory = _ => d.InitialMomentum };
        momentum.Validators.Add(r =>
        {
            if (Cli.TryValue(r, out double v) && !(v > 0 && v < 1))
            {
                r.AddError($"--momentum must be in (0, 1); got {v}.");
            }
        });
        var metaLr = Cli.Positive("--meta-lr", "Adam learning rate on log(lr) and logit(momentum)", d.MetaLr);
        var seed = new Option<ulong>("--seed") { Description = "Seed of the data and the weights", DefaultValueFactory = _ => d.Seed };
        var device = Cli.DeviceOption();
        var outDir = Cli.OutOption("hyper");
        var command = new Command("hyper", "Learn the inner learning rate and momentum by differentiating through an unrolled SGD run (override tensors)")
        {
            outer, inner, lr, momentum, metaLr, seed, device, outDir,
        };
        command.SetAction(r =>
        {
            if (Cli.ResolveDevice(r.GetValue(device)!) is not { } dev)
            {
                return 2;
            }
            var config = d with
            {
                OuterSteps = r.GetValue(outer),
                InnerSteps = r.GetValue(inner),
                InitialLr = r.GetValue(lr),
                InitialMomentum = r.GetValue(momentum),
                MetaLr = r.GetValue(metaLr),
                Seed = r.GetValue(seed),
                Device = dev,
            };
            string dir = Cli.PrepareOut(r.GetValue(outDir)!);
            Console.WriteLine(FormattableString.Invariant(
                $"Learning SGD's lr and momentum on {dev}: MLP 1-32-1 (tanh) fit to sin(2x), {config.InnerSteps} unrolled steps per update, {config.OuterSteps} updates (Adam lr {config.MetaLr})"));
            Console.WriteLine("| update | lr | momentum | validation MSE after the unrolled run |");
            Console.WriteLine("|---|---|---|---|");
            int every = Math.Max(1, config.OuterSteps / 10);
            var points = HyperLearning.Run(config, p =>
            {
                if (p.Step % every == 0 || p.Step == config.OuterSteps)
                {
                    Console.WriteLine(FormattableString.Invariant($"| {p.Step} | {p.Lr:F4} | {p.Momentum:F4} | {p.ValidationLoss:F5} |"));
                }
            });
            var steps = points.Select(p => (double)p.Step).ToArray();
            Plots.Save(Path.Combine(dir, "hyper_params.png"), "Hyperparameters learned through the unrolled run", "update", "value",
            [
                new Plots.Series("learning rate", steps, points.Select(p => p.Lr).ToArray()),
                new Plots.Series("momentum", steps, points.Select(p => p.Momentum).ToArray()),
            ]);
            Plots.Save(Path.Combine(dir, "hyper_loss.png"), $"Validation loss after {config.InnerSteps} SGD steps", "update", "MSE",
            [
                new Plots.Series("validation MSE", steps, points.Select(p => p.ValidationLoss).ToArray()),
            ], logY: true);
            Console.WriteLine();
            Console.WriteLine($"Plots written to {dir}: hyper_params.png, hyper_loss.png");
            return 0;
        });
        return command;
    }
}
