using System.CommandLine;
using System.Diagnostics;
using Higher.Data;
using Higher.Nn;
using Higher.Optim;
using Higher.Optim.Schedulers;

namespace Higher.Samples;

/// <summary>fashion-mlp: an MLP (784-256-10) trained on Fashion-MNIST from Debian's dataset-fashion-mnist.</summary>
internal static class FashionMlpCommand
{
    public static Command Create()
    {
        var epochs = Cli.Int("--epochs", "Training epochs", 5);
        var batch = Cli.Int("--batch", "Mini-batch size", 128);
        var lr = Cli.Positive("--lr", "Learning rate (cosine-annealed to 0)", 1e-3);
        var optimizerName = new Option<string>("--optimizer") { Description = "adam, or sgd (momentum 0.9, Nesterov)", DefaultValueFactory = _ => "adam" }
            .AcceptOnlyFromAmong("adam", "sgd");
        var data = new Option<string>("--data") { Description = "Folder of the IDX files", DefaultValueFactory = _ => FashionMnist.DefaultDirectory };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the weights and the shuffles", DefaultValueFactory = _ => 0 };
        var device = Cli.DeviceOption();
        var command = new Command("fashion-mlp", "An MLP trained on Fashion-MNIST (needs apt-get install dataset-fashion-mnist)")
        {
            epochs, batch, lr, optimizerName, data, seed, device,
        };
        command.SetAction(r =>
        {
            if (Cli.ResolveDevice(r.GetValue(device)!) is not { } dev)
            {
                return 2;
            }
            string dir = r.GetValue(data)!;
            if (!Directory.Exists(dir))
            {
                Console.Error.WriteLine($"--data: no folder {dir} (install Debian's dataset-fashion-mnist, or pass the folder of the IDX files).");
                return 2;
            }
            return Run(r.GetValue(epochs), r.GetValue(batch), r.GetValue(lr), r.GetValue(optimizerName)!, dir, r.GetValue(seed), dev);
        });
        return command;
    }

    private static int Run(int epochs, int batch, double lr, string optimizerName, string dataDir, ulong seed, Device device)
    {
        var clock = Stopwatch.StartNew();
        FashionMnist data;
        try
        {
            data = FashionMnist.Load(dataDir);
        }
        catch (FileNotFoundException e)
        {
            Console.Error.WriteLine(e.Message);
            return 1;
        }
        var trainX = data.TrainImages.Reshape(-1, 28 * 28).To(device);
        var testX = data.TestImages.Reshape(-1, 28 * 28).To(device);
        var trainY = data.TrainLabels.To(device);
        var testY = data.TestLabels.To(device);
        int n = trainX.Shape[0];
        Console.WriteLine(FormattableString.Invariant($"Fashion-MNIST: {n} training and {testX.Shape[0]} test images, loaded in {clock.Elapsed.TotalSeconds:F1} s"));

        var generator = new Generator(seed);
        var model = new Sequential(new Linear(28 * 28, 256, generator: generator), new Relu(), new Linear(256, 10, generator: generator));
        model.To(device);
        Console.WriteLine(model);
        Optimizer optimizer = optimizerName == "sgd"
            ? new Sgd(model.Parameters(), new SgdOptions { Lr = lr, Momentum = 0.9, Nesterov = true })
            : new Adam(model.Parameters(), new AdamOptions { Lr = lr });
        int stepsPerEpoch = (n + batch - 1) / batch;
        var schedule = new CosineAnnealingLR(optimizer, tMax: epochs * stepsPerEpoch);
        Console.WriteLine(FormattableString.Invariant($"{optimizerName} lr {lr} with cosine annealing, batch {batch}, {epochs} epochs, on {device}"));

        var order = Enumerable.Range(0, n).Select(i => (long)i).ToArray();
        for (int epoch = 1; epoch <= epochs; epoch++)
        {
            var epochClock = Stopwatch.StartNew();
            for (int i = n - 1; i > 0; i--)
            {
                int j = generator.NextInt(i + 1);
                (order[i], order[j]) = (order[j], order[i]);
            }
            model.Train();
            double lossSum = 0;
            for (int start = 0; start < n; start += batch)
            {
                int size = Math.Min(batch, n - start);
                var index = Tensor.FromArray(order.AsSpan(start, size).ToArray(), null, device);
                var loss = F.CrossEntropy(model.Forward(trainX.IndexSelect(0, index)), trainY.IndexSelect(0, index));
                optimizer.ZeroGrad();
                loss.Backward();
                optimizer.Step();
                schedule.Step();
                lossSum += loss.Item() * size;
            }
            double accuracy = Accuracy(model, testX, testY);
            Console.WriteLine(FormattableString.Invariant(
                $"epoch {epoch}: train loss {lossSum / n:F4}, test accuracy {accuracy:P2}, {epochClock.Elapsed.TotalSeconds:F1} s"));
        }
        Console.WriteLine(FormattableString.Invariant($"total {clock.Elapsed.TotalSeconds:F1} s"));
        return 0;
    }

    private static double Accuracy(Module model, Tensor images, Tensor labels)
    {
        model.Eval();
        using var noGrad = Autograd.NoGrad();
        long correct = 0;
        int count = images.Shape[0];
        for (int start = 0; start < count; start += 1000)
        {
            int size = Math.Min(1000, count - start);
            var predicted = model.Forward(images.Narrow(0, start, size)).ArgMax(1);
            correct += (long)predicted.Eq(labels.Narrow(0, start, size)).Cast(DType.Int64).Sum().Item();
        }
        return correct / (double)count;
    }
}
