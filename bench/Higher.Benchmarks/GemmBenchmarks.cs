using BenchmarkDotNet.Attributes;
using BenchmarkDotNet.Columns;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Reports;
using BenchmarkDotNet.Running;

namespace Higher.Benchmarks;

/// <summary>Square float32 GEMM through the engine; the GFLOP/s column is 2n³ / mean time.</summary>
[Config(typeof(GflopsConfig))]
public class GemmBenchmarks
{
    private Tensor _a = null!, _b = null!;

    [Params(64, 256, 1024)]
    public int N { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var g = new Generator(3);
        _a = Tensor.Randn([N, N], generator: g);
        _b = Tensor.Randn([N, N], generator: g);
    }

    [Benchmark]
    public Tensor MatMul() => Tensor.MatMul(_a, _b);

    private sealed class GflopsConfig : ManualConfig
    {
        public GflopsConfig() => AddColumn(new GflopsColumn());
    }

    private sealed class GflopsColumn : IColumn
    {
        public string Id => "GFLOPs";
        public string ColumnName => "GFLOP/s";
        public bool AlwaysShow => true;
        public ColumnCategory Category => ColumnCategory.Custom;
        public int PriorityInCategory => 0;
        public bool IsNumeric => true;
        public UnitType UnitType => UnitType.Dimensionless;
        public string Legend => "2·N³ floating-point operations per mean time";

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase)
        {
            var report = summary[benchmarkCase];
            if (report?.ResultStatistics is null)
            {
                return "-";
            }
            int n = (int)benchmarkCase.Parameters["N"];
            double seconds = report.ResultStatistics.Mean * 1e-9;
            return (2.0 * n * n * n / seconds / 1e9).ToString("F1", System.Globalization.CultureInfo.InvariantCulture);
        }

        public string GetValue(Summary summary, BenchmarkCase benchmarkCase, SummaryStyle style) => GetValue(summary, benchmarkCase);
        public bool IsDefault(Summary summary, BenchmarkCase benchmarkCase) => false;
        public bool IsAvailable(Summary summary) => true;
    }
}
