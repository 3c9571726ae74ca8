using System.Runtime.CompilerServices;
using Higher.Cuda;
using Higher.Functional;
using Higher.GradCheck;
using Higher.Nn;
using Higher.Optim;
using Higher.Reference;

namespace Higher.Conformance.Memory;

/// <summary>
/// Memory that is dead goes back at once: a MAML meta-iteration (an MLP of Linear and Relu, or a small conv net of higher's Omniglot block with batch norm; two tasks,
/// two inner steps with second-order gradients, the meta-gradient, an SGD meta-step) inside a scope
/// leaves the pool's bytes in use exactly at their baseline, with no garbage collection (checked in a
/// no-GC region where the runtime grants one, and by the collection counts), and stays flat over
/// 1,000 meta-iterations: no fresh array after the first iteration. The same holds for the CUDA
/// caching allocator's logic on its fake device. Runs alone (no other test's allocations or collections).
/// </summary>
[Collection(nameof(MamlMemoryTests))]
public sealed class MamlMemoryTests
{
    private sealed class Maml
    {
        private readonly Module _model;
        private readonly Sgd _metaOpt;
        private readonly (Tensor X, Tensor Y)[] _tasks;
        private readonly Func<Tensor, Tensor, Tensor> _loss;

        /// <param name="conv">higher's Omniglot block in small (Conv2d, BatchNorm2d with momentum 1, ReLU, MaxPool2d, then Linear), 5-way classification; else an MLP regressing a sine.</param>
        public Maml(Device device, bool conv = false)
        {
            var g = new Generator(5);
            _model = conv
                ? new Sequential(new Conv2d(1, 4, 3, generator: g), new BatchNorm2d(4, momentum: 1), new Relu(), new MaxPool2d(2), new Flatten(), new Linear(36, 5, generator: g))
                : new Sequential(new Linear(1, 32, generator: g), new Relu(), new Linear(32, 32, generator: g), new Relu(), new Linear(32, 1, generator: g));
            _model.To(device);
            _metaOpt = new Sgd(_model.Parameters(), new SgdOptions { Lr = 1e-3 });
            _loss = conv ? static (logits, labels) => F.CrossEntropy(logits, labels) : static (y, target) => F.MseLoss(y, target);
            _tasks = [.. Enumerable.Range(0, 2).Select(_ =>
            {
                if (conv)
                {
                    var images = Tensor.Rand([10, 1, 8, 8], DType.Float32, g, device);
                    return (images, Tensor.FromArray(Enumerable.Range(0, 10).Select(i => (long)(i % 5)).ToArray()).To(device));
                }
                var x = Tensor.Rand([10, 1], DType.Float32, g, device) * 10 - 5;
                return (x, x.Sin() * 2);
            })];
        }

        public Module Model => _model;

        public double MetaIteration()
        {
            double total = 0;
            using var scope = Tensor.NewScope("meta-iteration");
            foreach (var (x, y) in _tasks)
            {
                using var ctx = InnerLoop.Create(_model, new Sgd(_model.Parameters(), new SgdOptions { Lr = 0.01 }), copyInitialWeights: false, releaseOnDispose: true);
                var (fmodel, diffopt) = ctx;
                for (int k = 0; k < 2; k++)
                {
                    diffopt.Step(_loss(fmodel.Forward(x), y));
                }
                var query = _loss(fmodel.Forward(x), y);
                total += query.Item();
                query.Backward();
            }
            _metaOpt.Step();
            _metaOpt.ZeroGrad(); // inside the scope: the meta-gradients die with it
            return total;
        }
    }

    private static int GcCount() => GC.CollectionCount(0) + GC.CollectionCount(1) + GC.CollectionCount(2);

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void MamlMetaIterations_InAScope_ReturnThePoolToItsBaseline_AndStayFlatOver1000(bool conv)
    {
        var (device, pool) = TensorScopeTests.PrivateDevice();
        var maml = new Maml(device, conv);
        var baseline = pool.Statistics;
        double first = maml.MetaIteration();
        var warm = pool.Statistics;
        Assert.Equal(baseline.BytesInUse, warm.BytesInUse);
        Assert.True(warm.BytesCached > 0);
        long freshAfterWarmUp = warm.Rents - warm.Hits;

        // With garbage collection out of the picture: the baseline comes back after every meta-iteration.
        bool noGc = GC.TryStartNoGCRegion(64L << 20);
        int collections = GcCount();
        for (int it = 0; it < 20; it++)
        {
            maml.MetaIteration();
            Assert.Equal(baseline.BytesInUse, pool.Statistics.BytesInUse);
        }
        Assert.Equal(collections, GcCount());
        if (noGc && System.Runtime.GCSettings.LatencyMode == System.Runtime.GCLatencyMode.NoGCRegion)
        {
            GC.EndNoGCRegion();
        }

        double last = 0;
        for (int it = 0; it < 1000; it++)
        {
            last = maml.MetaIteration();
            var s = pool.Statistics;
            Assert.Equal(baseline.BytesInUse, s.BytesInUse);
            Assert.Equal(warm.BytesCached, s.BytesCached);
        }
        var end = pool.Statistics;
        Assert.Equal(freshAfterWarmUp, end.Rents - end.Hits); // every array of the last 1,020 iterations was reused
        Assert.Equal(warm.PeakBytesHeld, end.PeakBytesHeld);
        Assert.True(last < first, $"meta-training should lower the query loss: {first} -> {last}");
        Assert.All(maml.Model.Parameters(), p => Assert.False(p.IsReleased));
    }

    /// <summary>The allocation pattern of a meta-iteration (activations, views, a meta-gradient, kept results) over CUDA storages of the fake device; no kernel runs.</summary>
    [Fact]
    public void CudaAllocator_OnItsFakeDevice_UnderTensorScopes_ReturnsEveryBlockAtOnce_WithoutFinalizersOrCollections()
    {
        var memory = new global::Higher.Conformance.Kernels.CudaAllocatorTests.FakeDeviceMemory(1L << 30);
        var allocator = new CudaAllocator(memory, minimumCollectionThreshold: 1L << 20);
        var backend = new ForwardingBackend(ReferenceBackend.Instance, Device.Cuda(0));
        var parameter = Tensor.Make(allocator.NewStorage(DType.Float32, 1000, Device.Cuda(0)), new Shape(10, 100), backend);
        parameter.RequiresGrad = true;
        long baseline = allocator.Statistics.BytesInUse;
        var samples = new List<CudaAllocatorStatistics>();
        for (int it = 0; it < 1000; it++)
        {
            Iteration(allocator, backend, parameter);
            var s = allocator.Statistics;
            Assert.Equal(baseline, s.BytesInUse);
            if (it is 0 or 999)
            {
                samples.Add(s);
            }
        }
        Assert.Equal(samples[0].DeviceAllocations, samples[1].DeviceAllocations);
        Assert.Equal(0, samples[1].FinalizedReturns);
        Assert.Equal(0, samples[1].InducedCollections);
        Assert.True(samples[1].HitRate > 0.99, $"hit rate {samples[1].HitRate}");
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Iteration(CudaAllocator allocator, IBackend backend, Tensor parameter)
    {
        using var outer = Tensor.NewScope("meta-iteration");
        Tensor Make(long n) => Tensor.Make(allocator.NewStorage(DType.Float32, n, Device.Cuda(0)), new Shape((int)n), backend);
        for (int task = 0; task < 2; task++)
        {
            using var inner = Tensor.NewScope("task");
            var activations = Enumerable.Range(0, 8).Select(i => Make(1000 + (i * 4096))).ToList();
            _ = activations.Select(a => a.Reshape(1, -1)).ToList();   // views share their storage's fate
            parameter.Grad = Make(1000).Reshape(10, 100);                // the meta-gradient: survives the task
            inner.Keep(Make(64));                                         // kept to the meta-iteration scope
        }
        parameter.Grad = null; // the step consumed it
    }
}

/// <summary>Runs <see cref="MamlMemoryTests"/> alone.</summary>
[CollectionDefinition(nameof(MamlMemoryTests), DisableParallelization = true)]
public sealed class MamlMemoryTestsCollection;
