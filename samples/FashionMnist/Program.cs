using System.Diagnostics;
using System.Globalization;
using Higher;
using Higher.Data;
using Higher.Nn;
using Higher.Optim;
using Higher.Optim.Schedulers;

// An MLP (784-256-10, ReLU) trained on Fashion-MNIST from Debian's dataset-fashion-mnist package.
// Usage: dotnet run -c Release --project samples/FashionMnist [-- --epochs N] [--batch N] [--lr X]
//        [--optimizer adam|sgd] [--data DIR] [--seed N]
int epochs = 5, batch = 128;
double lr = 1e-3;
string optimizerName = "adam";
string? dataDir = null;
ulong seed = 0;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--epochs": epochs = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--batch": batch = int.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--lr": lr = double.Parse(args[++i], CultureInfo.InvariantCulture); break;
        case "--optimizer": optimizerName = args[++i]; break;
        case "--data": dataDir = args[++i]; break;
        case "--seed": seed = ulong.Parse(args[++i], CultureInfo.InvariantCulture); break;
        default:
            Console.Error.WriteLine($"Unknown argument {args[i]}. Options: --epochs N, --batch N, --lr X, --optimizer adam|sgd, --data DIR, --seed N");
            return 2;
    }
}

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
var trainX = data.TrainImages.Reshape(-1, 28 * 28);
var testX = data.TestImages.Reshape(-1, 28 * 28);
int n = trainX.Shape[0];
Console.WriteLine(FormattableString.Invariant($"Fashion-MNIST: {n} training and {testX.Shape[0]} test images, loaded in {clock.Elapsed.TotalSeconds:F1} s"));

var generator = new Generator(seed);
var model = new Sequential(new Linear(28 * 28, 256, generator: generator), new Relu(), new Linear(256, 10, generator: generator));
Optimizer optimizer = optimizerName switch
{
    "adam" => new Adam(model.Parameters(), new AdamOptions { Lr = lr }),
    "sgd" => new Sgd(model.Parameters(), new SgdOptions { Lr = lr, Momentum = 0.9, Nesterov = true }),
    _ => throw new ArgumentException($"Unknown optimizer '{optimizerName}' (adam or sgd)."),
};
int stepsPerEpoch = (n + batch - 1) / batch;
var schedule = new CosineAnnealingLR(optimizer, tMax: epochs * stepsPerEpoch);
Console.WriteLine(FormattableString.Invariant($"MLP 784-256-10, {optimizerName} lr {lr} with cosine annealing, batch {batch}, {epochs} epochs"));

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
        var index = Tensor.FromArray(order.AsSpan(start, size).ToArray());
        var loss = F.CrossEntropy(model.Forward(trainX.IndexSelect(0, index)), data.TrainLabels.IndexSelect(0, index));
        optimizer.ZeroGrad();
        loss.Backward();
        optimizer.Step();
        schedule.Step();
        lossSum += loss.Item() * size;
    }
    double accuracy = Accuracy(model, testX, data.TestLabels);
    Console.WriteLine(FormattableString.Invariant(
        $"epoch {epoch}: train loss {lossSum / n:F4}, test accuracy {accuracy:P2}, {epochClock.Elapsed.TotalSeconds:F1} s"));
}
Console.WriteLine(FormattableString.Invariant($"total {clock.Elapsed.TotalSeconds:F1} s"));
return 0;

static double Accuracy(Module model, Tensor images, Tensor labels)
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
