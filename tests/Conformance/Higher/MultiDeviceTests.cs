using Higher.Functional;
using Higher.GradCheck;
using Higher.Optim;
using Higher.Conformance.Engine;
using Higher.Reference;

namespace Higher.Conformance.Higher;

/// <summary>
/// A meta-batch split across devices and threads (higher's #24 and #98, "wontfix" there): each task
/// adapts a functional copy whose time-0 weights are the model's parameters moved to its device,
/// and every query loss backpropagates into the model's own gradients. The second device is the
/// Reference backend registered as cpu:1, so this runs without a GPU; a CUDA device takes its place
/// unchanged.
/// </summary>
public sealed class MultiDeviceTests
{
    private static readonly Device Second = new(DeviceType.Cpu, 1);

    static MultiDeviceTests() => Backends.Register(new ForwardingBackend(ReferenceBackend.Instance, Second));

    private sealed record TaskData(Tensor Xs, Tensor Ys, Tensor Xq, Tensor Yq);

    private static TaskData[] MakeTasks(int count)
    {
        var g = new Generator(71);
        return Enumerable.Range(0, count)
            .Select(_ => new TaskData(TestModels.Rand(g, 6, 4), TestModels.Rand(g, 6, 2), TestModels.Rand(g, 6, 4), TestModels.Rand(g, 6, 2)))
            .ToArray();
    }

    /// <summary>Adapts on one task on <paramref name="device"/> and backpropagates the query loss into the model.</summary>
    private static void RunTask(global::Higher.Nn.Module model, Optimizer inner, TaskData t, Device device)
    {
        using var ctx = InnerLoop.Create(model, inner, device: device, copyInitialWeights: false);
        var (fmodel, diffopt) = ctx;
        for (int step = 0; step < 2; step++)
        {
            diffopt.Step(F.MseLoss(fmodel.Forward(t.Xs.To(device)), t.Ys.To(device)));
        }
        var query = F.MseLoss(fmodel.Forward(t.Xq.To(device)), t.Yq.To(device));
        Assert.Equal(device, query.Device);
        query.Backward();
    }

    [Fact]
    public void MetaBatchSplitAcrossDevicesAndThreads_EqualsTheSequentialMetaGradient()
    {
        var tasks = MakeTasks(8);

        var reference = TestModels.Simple(new Generator(70));
        var referenceInner = new Sgd(reference.Parameters(), new SgdOptions { Lr = 0.1, Momentum = 0.5 });
        foreach (var t in tasks)
        {
            RunTask(reference, referenceInner, t, Device.Cpu);
        }
        var expected = reference.Parameters().Select(p => p.Grad!.ToDoubleArray()).ToArray();

        var model = TestModels.Simple(new Generator(70));
        var inner = new Sgd(model.Parameters(), new SgdOptions { Lr = 0.1, Momentum = 0.5 });
        Device[] devices = [Device.Cpu, Second];
        Parallel.For(0, devices.Length, new ParallelOptions { MaxDegreeOfParallelism = devices.Length }, d =>
        {
            for (int i = d; i < tasks.Length; i += devices.Length)
            {
                RunTask(model, inner, tasks[i], devices[d]);
            }
        });

        var got = model.Parameters().ToArray();
        for (int i = 0; i < got.Length; i++)
        {
            Assert.Equal(Device.Cpu, got[i].Grad!.Device);
            // Same terms, summed in another order: equal up to rounding.
            Numeric.AssertClose(expected[i], got[i].Grad!.ToDoubleArray(), 1e-12, $"meta-gradient of parameter {i}");
        }
    }
}
