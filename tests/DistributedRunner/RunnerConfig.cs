using Higher;
using Higher.Samples.MamlSinusoid;

namespace Higher.DistributedRunner;

/// <summary>The settings the test uses for both the distributed and the single-process run.</summary>
public static class RunnerConfig
{
    public static MamlConfig Maml => new()
    {
        Iterations = 10,
        MetaBatch = 5,
        K = 10,
        DType = DType.Float64,
        Seed = 7,
    };
}
