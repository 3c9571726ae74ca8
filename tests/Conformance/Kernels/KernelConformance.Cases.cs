using Higher.Reference;

namespace Higher.Conformance.Kernels;

public abstract partial class KernelConformance
{
    private static readonly ReferenceBackend SingleThreadedReference = new(maxDegreeOfParallelism: 1);

    /// <summary>The names of the cases of <see cref="KernelCases"/>, the table the device check runs too.</summary>
    public static TheoryData<string, DType> KernelCaseNames()
    {
        var data = new TheoryData<string, DType>();
        foreach (var (name, _) in KernelCases.All())
        {
            data.Add(name, DType.Float32);
            data.Add(name, DType.Float64);
        }
        return data;
    }

    /// <summary>How far this backend may stray from a single-threaded Reference in each dtype (0 for Reference itself: the same bits whatever the thread count).</summary>
    protected virtual double CaseTolerance(DType dtype) => dtype == DType.Float32 ? 1e-5 : 1e-10;

    [Theory]
    [MemberData(nameof(KernelCaseNames))]
    public void KernelCase_AgreesWithTheSingleThreadedReference(string name, DType dtype)
    {
        RequireBackend();
        var run = KernelCases.All().First(c => c.Name == name).Run;
        var (worst, detail) = KernelCases.Compare(run, name, dtype, SingleThreadedReference, Backend);
        Assert.True(worst <= CaseTolerance(dtype), $"{name} in {dtype.Name()}: {detail} deviates by {worst:R} (bound {CaseTolerance(dtype):R}).");
    }
}
