using System.Globalization;
using Higher;
using Higher.Distributed;
using Higher.GradCheck;
using Higher.DistributedRunner;
using Higher.Nn;
using Higher.Samples.MamlSinusoid;

// Started by tests/Distributed as `mpirun -np N dotnet DistributedRunner.dll <scenario> <out-folder>`.
// Each rank writes <out-folder>/rank<r>.txt; the test, not this program, decides pass or fail.
//   maml:   MAML sinusoid data-parallel (float64, meta-batch 5: uneven over 2 or 3 ranks), 10 meta-steps:
//           the meta-gradient of step 0 after the allreduce, then the parameters after the 10 steps (as bits).
//   errors: the failures a user can meet, each caught and its message written.
if (args.Length != 2)
{
    Console.Error.WriteLine("usage: DistributedRunner maml|errors <out-folder>");
    return 2;
}
using var world = Communicator.Initialize();
var lines = new List<string> { $"rank {world.Rank} size {world.Size}" };
switch (args[0])
{
    case "maml":
        RunMaml(world, lines);
        break;
    case "errors":
        RunErrors(world, lines);
        break;
    case "latency":
        RunLatency(world, lines);
        break;
    default:
        Console.Error.WriteLine($"unknown scenario {args[0]}");
        return 2;
}
File.WriteAllLines(Path.Combine(args[1], $"rank{world.Rank}.txt"), lines);
return 0;

static void RunMaml(Communicator world, List<string> lines)
{
    var config = RunnerConfig.Maml;
    var share = new RecordingShare(world);
    var model = Maml.MetaTrain(config, share: share);
    lines.Add($"tasks {share.Range.Start} {share.Range.Count}");
    foreach (var (name, grad) in share.FirstGrads)
    {
        lines.Add($"grad {name} {Bits(grad)}");
    }
    foreach (var (name, value) in model.NamedParameters())
    {
        lines.Add($"param {name} {Bits(value.ToDoubleArray())}");
    }
}

static void RunErrors(Communicator world, List<string> lines)
{
    // Ranks that disagree on shapes: rank r passes [r + 1].
    lines.Add("shapes " + Message(() => world.AllReduce(Tensor.Ones([world.Rank + 1], DType.Float64))));
    // ... on dtypes for a broadcast.
    lines.Add("dtypes " + Message(() => world.Broadcast(Tensor.Zeros([3], world.Rank == 0 ? DType.Float32 : DType.Float64))));
    // A collective that MPI itself fails (a negative count), named with its call and rank.
    lines.Add("mpi " + Message(() => world.FailForTest()));
    // CUDA tensors without NCCL: a backend that claims cuda:0 (Reference kernels underneath).
    Backends.Register(new ForwardingBackend(Backends.For(Device.Cpu), Device.Cuda(0)));
    lines.Add("cuda " + Message(() => world.AllReduce(Tensor.Ones([2], DType.Float32, Device.Cuda(0)))));
    // Open MPI installs signal handlers at MPI_Init; the runtime's own (a null dereference becoming
    // NullReferenceException through SIGSEGV) must still work afterwards.
    lines.Add("null " + Message(() => _ = NullText()!.Length));
    // BroadcastState: models initialised from different seeds end as rank 0's (parameters and buffers).
    var model = new Higher.Nn.BatchNorm1d(3);
    using (Autograd.NoGrad())
    {
        int k = 0;
        foreach (var (_, t) in model.NamedParameters().Concat(model.NamedBuffers()))
        {
            t.FillInPlace((10 * world.Rank) + k++);
        }
    }
    DataParallel.BroadcastState(world, model);
    lines.Add("state " + string.Join(' ', model.NamedParameters().Concat(model.NamedBuffers()).Select(p => $"{p.Name}={string.Join(',', p.Value.ToDoubleArray())}")));
    // AllReduceGrads where ranks lack gradients: only rank 0 has one, for the first parameter only.
    var handles = model.NamedParameterHandles();
    if (world.Rank == 0)
    {
        handles[0].Parameter.Grad = Tensor.FromArray(new float[] { 1, 2, 3 });
    }
    DataParallel.AllReduceGrads(world, model);
    lines.Add("grads " + string.Join(' ', handles.Select(h => $"{h.Name}={(h.Parameter.Grad is { } g ? string.Join(',', g.ToDoubleArray()) : "null")}")));
    // After all that, the communicator still works: a correct allreduce.
    var sum = world.AllReduce(Tensor.FromArray(new double[] { world.Rank + 1, 10 }));
    lines.Add("after " + string.Join(' ', sum.ToDoubleArray().Select(v => v.ToString("R", CultureInfo.InvariantCulture))));
    world.Barrier();
    var mean = world.AllReduce(Tensor.FromArray(new float[] { world.Rank + 1, 10 }), CollectiveOp.Mean);
    var max = world.AllReduce(Tensor.FromArray(new double[] { world.Rank, -world.Rank }), CollectiveOp.Max);
    lines.Add("more " + string.Join(' ', mean.ToDoubleArray().Concat(max.ToDoubleArray()).Append(world.AllReduce(world.Rank + 0.5))
        .Select(v => v.ToString("R", CultureInfo.InvariantCulture))) + " " + mean.DType.Name());
}

// Not a test: the cost of one collective on this machine (bench/RESULTS.md quotes it).
static void RunLatency(Communicator world, List<string> lines)
{
    var grads = Enumerable.Range(0, 6).Select(i => Tensor.Ones([40 * (i + 1)], DType.Float32)).ToArray();
    for (int warm = 0; warm < 20; warm++)
    {
        world.Barrier();
    }
    foreach (var (name, action) in new (string, Action)[]
    {
        ("barrier", world.Barrier),
        ("allreduce-double", () => world.AllReduce(1.0)),
        ("allreduce-6-tensors", () => world.AllReduce(grads)),
    })
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        const int N = 200;
        for (int i = 0; i < N; i++)
        {
            action();
        }
        lines.Add($"{name} {clock.Elapsed.TotalMilliseconds * 1000 / N:F1} us");
    }
}

static string? NullText() => Environment.GetEnvironmentVariable("HIGHER_MPI_RUNNER_NO_SUCH_VARIABLE");

static string Message(Action action)
{
    try
    {
        action();
        return "no exception";
    }
    catch (Exception e)
    {
        return $"{e.GetType().Name}: {e.Message.Replace('\n', ' ')}";
    }
}

static string Bits(double[] values) => string.Join(' ', values.Select(v => BitConverter.DoubleToInt64Bits(v).ToString("x16", CultureInfo.InvariantCulture)));

/// <summary>The runner's share of each meta-batch: the sample's, recording the meta-gradient of step 0 after the allreduce.</summary>
internal sealed class RecordingShare(Communicator world) : IMetaBatchShare
{
    public TaskRange Range { get; private set; }

    public List<(string Name, double[] Grad)> FirstGrads { get; } = [];

    public void Start(Module model) => DataParallel.BroadcastState(world, model);

    public (int Start, int Count) Tasks(int metaBatch)
    {
        Range = world.Split(metaBatch);
        return (Range.Start, Range.Count);
    }

    public double Reduce(Module model, int iteration, double localLoss)
    {
        double total = DataParallel.AllReduceGrads(world, model, localLoss);
        if (iteration == 0)
        {
            foreach (var (name, p) in model.NamedParameterHandles())
            {
                FirstGrads.Add((name, p.Grad!.ToDoubleArray()));
            }
        }
        return total;
    }
}
